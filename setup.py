"""The parts of the build that pyproject.toml cannot declare: the compiled extension
``fasterrcnn._C`` and the top-level ``cfgs/`` folder shipped as ``fasterrcnn/cfgs``.

The C++ CPU kernels are always built; the CUDA kernels too when CUDA is available at build
time or FORCE_CUDA=1.  Metadata, dependencies and entry points live in pyproject.toml.
Install: ``pip install --no-build-isolation .`` (``-e`` for development).
"""

import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"


def _use_cuda() -> bool:
    return torch.cuda.is_available() or os.environ.get("FORCE_CUDA", "0") == "1"


def _extension():
    sources = [os.path.join(CSRC, "bindings.cpp"), os.path.join(CSRC, "cpu", "ops_cpu.cpp")]
    include_dirs = [os.path.join(ROOT, CSRC), os.path.join(ROOT, CSRC, "include")]
    # at::parallel_for is OpenMP-based in these torch builds: without -fopenmp it runs serially
    cxx_flags = ["-O3", "-fopenmp"]
    link_flags = ["-fopenmp"]
    if not _use_cuda():
        return CppExtension(
            "fasterrcnn._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    sources += [os.path.join(CSRC, "cuda_glue.cpp")]
    sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
    nvcc_flags = ["-O3", "--expt-relaxed-constexpr"]
    return CUDAExtension(
        "fasterrcnn._C",
        sources,
        include_dirs=include_dirs,
        define_macros=[("WITH_CUDA", None)],
        extra_link_args=link_flags,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
    )


# The YAML configs stay in the top-level cfgs/ folder and install as fasterrcnn/cfgs/*.yml, where
# fasterrcnn.config.packaged finds them by name (--cfg shapes).
CONFIG_PACKAGE = "fasterrcnn.cfgs"

setup(
    packages=find_packages(include=("fasterrcnn", "fasterrcnn.*")) + [CONFIG_PACKAGE],
    package_dir={CONFIG_PACKAGE: "cfgs"},
    package_data={CONFIG_PACKAGE: ["*.yml"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
    zip_safe=False,
)
