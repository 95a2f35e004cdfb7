"""Build hook: compiles the optional C MIDI parser (composer.midi._smf) and the warm
prepare's stat walk (composer.corpus._walk).

`optional=True` keeps installation working without a C compiler; composer then
falls back to its pure-Python parser, which follows the same rules, and to its
Python scan of the folder.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("composer.midi._smf", ["composer/midi/_smf.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("composer.corpus._walk", ["composer/corpus/_walk.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ]
)
