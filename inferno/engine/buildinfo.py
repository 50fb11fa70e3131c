"""What the installed llama-cpp-python was compiled with: ggml's backends, RPC, GPU offload, the devices
(`inferno version`)."""

from __future__ import annotations

from typing import Any


def build_info() -> dict[str, Any]:
    """What the installed llama-cpp-python was compiled with: ggml's backends, RPC, GPU offload, the devices."""
    import ctypes

    import llama_cpp

    from inferno.engine.devices import dev_description, dev_name, ggml, local_accelerators, local_devices

    g = ggml()
    g.ggml_backend_reg_count.argtypes, g.ggml_backend_reg_count.restype = [], ctypes.c_size_t
    g.ggml_backend_reg_get.argtypes, g.ggml_backend_reg_get.restype = [ctypes.c_size_t], ctypes.c_void_p
    g.ggml_backend_reg_name.argtypes, g.ggml_backend_reg_name.restype = [ctypes.c_void_p], ctypes.c_char_p
    backends = [(g.ggml_backend_reg_name(g.ggml_backend_reg_get(i)) or b"?").decode()
                for i in range(g.ggml_backend_reg_count())]
    # llama_supports_gpu_offload() is also true for RPC alone: a GPU backend is one beyond CPU, BLAS and RPC
    gpu_backends = [b for b in backends if b not in ("CPU", "BLAS", "RPC")]
    return {"backends": backends, "rpc": bool(llama_cpp.llama_supports_rpc()), "gpu_offload": bool(gpu_backends),
            "gpu_backends": gpu_backends, "mlock": bool(llama_cpp.llama_supports_mlock()),
            "devices": [f"{dev_name(d)} ({dev_description(d)})" for d in local_devices()],
            "gpus": [dev_name(d) for d in local_accelerators()]}
