"""The one compiled part of bertconv, an optional transpose (see bertconv/_transpose.c). Everything
else is in pyproject.toml. Without a C compiler the build goes on and bertconv uses NumPy instead."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("bertconv._transpose", ["bertconv/_transpose.c"],
                             optional=True)])
