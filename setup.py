"""kelian's compiled pieces, built when the package is installed: sfu/_fanout.c (the forwarding
path's fan-out), sfu/_delay.c (the transport-cc delay detector) and sfu/_srtp.c (SRTP protect for
AES-GCM, over OpenSSL's libcrypto). Optional: without a C compiler, Python's headers or OpenSSL's
kelian still installs and runs on their Python references (Consumer.send, bwe.DelayDetector) and
libsrtp, slower (docs/performance.md)."""

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
    + [
        Extension(
            "sfu._srtp", ["sfu/_srtp.c"], libraries=["crypto"], extra_compile_args=["-O2"], optional=True
        )
    ]
)
