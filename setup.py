"""The one compiled piece of kelian, sfu/_fanout.c (the forwarding path's fan-out), built when the
package is installed. Optional: without a C compiler and Python's headers kelian still installs and
runs, forwarding through the Python reference path (sfu/consumer.py, Consumer.send), slower."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sfu._fanout", ["sfu/_fanout.c"], extra_compile_args=["-O2"], optional=True)])
