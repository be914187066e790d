"""The one part of the build that pyproject.toml cannot declare without an experimental table:
charlm's int8 one-token step in C (charlm/models/int8_step.py).

The extension is optional: where no C compiler is found the install goes on, and int8 models
step through PyTorch's operators instead.
"""

import sys

from setuptools import Extension, setup

# -fno-trapping-math lets the compiler vectorize the gates' clamps (GCC and Clang; MSVC has
# no such flag and needs none).
FLAGS = [] if sys.platform == "win32" else ["-fno-trapping-math"]

setup(
    ext_modules=[
        Extension(
            "charlm.models._int8step",
            sources=["charlm/models/_int8step.c"],
            extra_compile_args=FLAGS,
            optional=True,
        )
    ]
)
