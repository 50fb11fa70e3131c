"""The engine: core requests in, events out.

What the rest of Inferno sees is the `Engine` protocol (protocol.py) and `RequestHandle` (handle.py); the
scheduler implements it. The modules that call llama.cpp (model, batcher, sequence, embedder, …) import
llama-cpp-python inside their functions, so importing the engine's types stays cheap.
"""
