"""`cmal bench`: how fast the engine runs, and how close the service over HTTP comes to it.

`loadgen` is the lightweight HTTP load generator (its own process during a benchmark),
`server` starts the service as a real process and reads its metrics, `engine` times the
backends in-process, `suite` runs the whole benchmark and writes its JSON and plot.
"""
