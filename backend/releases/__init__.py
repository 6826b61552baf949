"""Model releases: versioned artifacts, a gate before traffic, canary/shadow routing and a judge.

A model *version* is an ONNX file plus its card, addressed as name + card version. The release
state of each served name (stable, candidate, mode, weight, policy, history) is one JSON file
(locally under the models folder; on a cluster a mounted ConfigMap), written atomically under a
lock by ``visionctl release`` and by the serving processes, and watched by every serving process.

Modules, bottom up: ``policy`` (thresholds), ``record`` (the state file), ``store`` (versions on
disk), ``golden`` (the golden set of a name), ``gate`` (checks before traffic), ``judge``
(promote/rollback decisions from live figures), ``metrics`` (per-version series), ``router`` (which
version answers a request, shadow copies) and ``manager`` (the watcher that ties them together in
a serving process). Nothing here imports Flask: the inference pipeline (``backend.serving.pipeline``)
calls :class:`~backend.releases.manager.Releases`.
"""
