"""BGP mode's speaker: a BIRD 2 process that kvip runs, configures and reads back.

`config` renders BIRD's configuration (pure), `control` speaks its control-socket protocol, `process`
supervises the daemon in its private run directory, `speaker` is the backend implementing
`kvip.dataplane.base.Dataplane` with them, and `metrics` its Prometheus collector.
"""
