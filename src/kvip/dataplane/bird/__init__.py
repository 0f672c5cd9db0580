"""BGP mode's speaker: a BIRD 2 process that kvip runs, configures and reads back.

Owns the rendering of BIRD's configuration, the control-socket protocol and the speaker backend
that implements `kvip.dataplane.base.Dataplane` with it.
"""
