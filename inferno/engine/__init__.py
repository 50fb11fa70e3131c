"""The engine: core requests in, events out. llama-cpp-python is imported only inside this package.

The public surface is deliberately narrow (Scheduler.submit / embed / load / unload / loaded, and
RequestHandle's async iteration and cancel) so a continuous-batching engine can replace the internals.
"""
