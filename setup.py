"""The wheel carries a copy of the files a bake reads (builder/source_tree.py): the metadata is
all in pyproject.toml; this only adds that copy to what build_py puts in the wheel."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from builder.source_tree import PACKAGE_COPY, copy_tree  # noqa: E402


class BuildPyWithSourceTree(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "builder" / PACKAGE_COPY
        if target.exists():
            shutil.rmtree(target)
        copy_tree(target, root=HERE)


setup(cmdclass={"build_py": BuildPyWithSourceTree})
