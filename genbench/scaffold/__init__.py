"""``genbench plugin new``: a ready, installable plugin package from string templates.

:func:`write_plugin` writes ``DIRECTORY/genbench-NAME/``::

    genbench-NAME/
        pyproject.toml                      setuptools; entry point NAME = "genbench_NAME" in group genbench
        README.md                           install, test, what to edit
        genbench_NAME/__init__.py           one documented, working component of the kind, registered
                                            through its hook (register_measures, register_models, ...)
        tests/test_NAME_conformance.py      genbench's conformance kit (genbench.testing) on it

(``genbench_NAME`` and ``test_NAME`` with '-' written '_'.) The component is called NAME too, and
the command refuses a NAME that an installed component of that kind already has. The templates are Python strings (one module per
kind: :mod:`genbench.scaffold.measure`, ``model``, ``corruption``, ``dataset``, and
:mod:`genbench.scaffold.package` for the files every kind shares), so they ship with the package
without any package-data configuration. Placeholders are ``{{key}}``; a rendered file never
contains one.

This module imports nothing heavy (no torch): the command answers at once. Checking that NAME is
not taken by an installed plugin needs the registries, which is the command's job
(:mod:`genbench.cli.plugin_new`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from genbench.errors import GenbenchError, UsageError
from genbench.scaffold import corruption, dataset, measure, model, package

#: The kinds of component a new plugin can contribute, in the order the help lists them.
KINDS = ("measure", "model", "corruption", "dataset")
#: A plugin name: lower-case letters and digits joined by '-'.
NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
#: ``{{key}}``: a placeholder of the templates.
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

_TEMPLATES = {"measure": measure, "model": model, "corruption": corruption, "dataset": dataset}
_HOOKS = {kind: f"register_{kind}s" for kind in KINDS}


@dataclass(frozen=True)
class PluginNames:
    """The names one plugin NAME implies."""

    name: str  #: the entry point's and the component's name: "my-thing"
    kind: str  #: "measure" | "model" | "corruption" | "dataset"

    @property
    def distribution(self) -> str:
        """The distribution (and folder) name: "genbench-my-thing"."""
        return f"genbench-{self.name}"

    @property
    def identifier(self) -> str:
        """NAME as a Python identifier fragment: "my_thing"."""
        return self.name.replace("-", "_")

    @property
    def module(self) -> str:
        """The importable module: "genbench_my_thing"."""
        return f"genbench_{self.identifier}"

    @property
    def class_name(self) -> str:
        """The component's class: "MyThingMeasure" for a measure "my-thing", "EdgeModel" for a model
        "edge-model" (the kind is not repeated, except for a NAME that is just the kind: "DatasetDataset",
        which cannot clash with the names the template imports), prefixed "Plugin" when NAME starts with a digit."""
        camel = "".join(part[:1].upper() + part[1:] for part in self.name.split("-"))
        if camel[0].isdigit():
            camel = "Plugin" + camel
        suffix = self.kind.capitalize()
        return camel if camel.endswith(suffix) and camel != suffix else camel + suffix

    @property
    def hook(self) -> str:
        """The hook that registers the component: "register_measures"."""
        return _HOOKS[self.kind]

    @property
    def test_file(self) -> str:
        """The test module, unique per plugin (pytest may collect several plugins' tests at once)."""
        return f"tests/test_{self.identifier}_conformance.py"

    def substitutions(self) -> dict[str, str]:
        return {
            "name": self.name,
            "kind": self.kind,
            "distribution": self.distribution,
            "identifier": self.identifier,
            "module": self.module,
            "class": self.class_name,
            "hook": self.hook,
            "test_file": self.test_file,
        }


def plugin_names(name: str, kind: str = "measure") -> PluginNames:
    """The names of plugin ``name`` of ``kind``; a UsageError (exit code 2) naming the problem
    when ``name`` is not lower-case letters and digits joined by '-', repeats genbench's own
    prefix, or ``kind`` is not one of :data:`KINDS`."""
    if kind not in KINDS:
        raise UsageError(f"unknown plugin kind '{kind}'; choose one of {', '.join(KINDS)}")
    if not NAME_PATTERN.match(name):
        raise UsageError(
            f"plugin name '{name}' must be lower-case letters and digits joined by '-' (e.g. 'my-{kind}')"
        )
    if name == "genbench" or name.startswith("genbench-"):
        raise UsageError(
            f"plugin name '{name}': give it without the 'genbench-' prefix, which the package name adds"
        )
    return PluginNames(name=name, kind=kind)


def render(template: str, values: dict[str, str]) -> str:
    """``template`` with every ``{{key}}`` replaced by ``values[key]``."""

    def substitute(match: re.Match[str]) -> str:
        return values[match.group(1)]

    text = PLACEHOLDER.sub(substitute, template)
    if "{{" in text or "}}" in text:  # a template bug: never reaches a user's files
        raise ValueError("a scaffold template left a '{{' or '}}' behind")
    return text


def plugin_files(name: str, kind: str = "measure") -> dict[str, str]:
    """The files of plugin ``name`` of ``kind``: path relative to ``genbench-NAME/`` -> text."""
    names = plugin_names(name, kind)
    values = names.substitutions()
    templates = _TEMPLATES[kind]
    values["dependencies"] = ", ".join(f'"{requirement}"' for requirement in templates.DEPENDENCIES)
    values["summary"] = render(templates.SUMMARY, values)
    values["usage"] = render(templates.USAGE, values)
    values["edit"] = render(templates.EDIT, values)
    return {
        "pyproject.toml": render(package.PYPROJECT, values),
        "README.md": render(package.README, values),
        f"{names.module}/__init__.py": render(templates.MODULE, values),
        names.test_file: render(templates.TEST, values),
    }


def write_plugin(name: str, kind: str = "measure", directory: str | os.PathLike[str] = ".") -> Path:
    """Write plugin ``name`` of ``kind`` to ``directory/genbench-NAME/`` and return that folder.

    ``directory`` is created when missing. The package is written to a temporary folder beside
    the target and renamed into place, so a failure leaves nothing half-written. A UsageError
    (exit code 2) when the name or kind is wrong, or the target (or ``directory``, as a file)
    already exists."""
    names = plugin_names(name, kind)
    files = plugin_files(name, kind)
    parent = Path(directory).expanduser()
    target = parent / names.distribution
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{parent} is a file, not a folder to write the plugin into")
    if target.exists() or target.is_symlink():
        raise UsageError(f"{target} already exists; choose another name or --directory (nothing was written)")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _write_staged(files, parent, target, names.distribution)
    except OSError as exc:
        raise GenbenchError(f"could not write {target}: {exc.strerror or exc}") from None
    return target


def _write_staged(files: dict[str, str], parent: Path, target: Path, distribution: str) -> None:
    """Write ``files`` into a fresh hidden folder of ``parent``, then rename it to ``target``."""
    staging = parent / f".{distribution}-{os.getpid()}-{secrets.token_hex(4)}.partial"
    staging.mkdir()
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if target.exists() or target.is_symlink():  # it appeared meanwhile: never replace it
            raise UsageError(f"{target} already exists; choose another name or --directory (nothing was written)")
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
