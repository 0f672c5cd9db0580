"""Small runtime building blocks below every adapter: asyncio task helpers (`tasks`: the coalescing
`Trigger`, `cancel_and_wait`, `Backoff`) and entering network namespaces (`netns`). No other kvip
imports: `kube`, `dataplane`, `reconcile` and the lab all stand on this.
"""
