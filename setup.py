"""Build hook: compiles the optional C MIDI parser (composer._smf).

`optional=True` keeps installation working without a C compiler; composer then
falls back to its pure-Python parser, which follows the same rules.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("composer._smf", ["composer/_smf.c"], optional=True, extra_compile_args=["-O2"]),
    ]
)
