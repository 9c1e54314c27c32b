"""kelian's compiled pieces, built when the package is installed: sfu/_fanout.c (the forwarding
path's fan-out) and sfu/_delay.c (the transport-cc delay detector). Optional: without a C compiler
and Python's headers kelian still installs and runs on their Python references (Consumer.send,
bwe.DelayDetector), slower (docs/performance.md)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            f"sfu.{name}",
            [f"sfu/{name}.c"],
            depends=["sfu/_history.h"],
            extra_compile_args=["-O2"],
            optional=True,
        )
        for name in ("_fanout", "_delay")
    ]
)
