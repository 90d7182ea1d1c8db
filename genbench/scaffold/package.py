"""The files every new plugin has, whatever its kind: ``pyproject.toml`` and ``README.md``.

Placeholders (``{{key}}``) are filled by :func:`genbench.scaffold.plugin_files`; ``summary``,
``usage`` and ``edit`` come from the kind's template module.
"""

from __future__ import annotations

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{{distribution}}"
version = "0.1.0"
description = "A genbench plugin: the {{kind}} {{name}}."
readme = "README.md"
requires-python = ">=3.11"
dependencies = [{{dependencies}}]

[project.optional-dependencies]
test = ["pytest>=8"]

# genbench finds the plugin through this entry point and calls the module's {{hook}} hook.
[project.entry-points.genbench]
{{name}} = "{{module}}"

[tool.setuptools.packages.find]
include = ["{{module}}*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """\
# {{distribution}}

A plugin for genbench, the benchmark of generalization measures. It adds one {{kind}}, `{{name}}`:
{{summary}}

## Install

Next to genbench, in the same environment, from this folder:

```bash
pip install -e ".[test]"            # the [test] extra brings pytest
genbench plugins                  # {{name}} is listed as loaded, with what it registered
genbench list {{kind}}s --options   # {{name}}, origin plugin {{name}} ({{distribution}} 0.1.0)
```

genbench finds the plugin through the entry point in `pyproject.toml`
(`[project.entry-points.genbench] {{name}} = "{{module}}"`); the module implements the
`{{hook}}` hook with `@genbench.hookimpl`. While you work on it, `GENBENCH_STRICT_PLUGINS=1`
makes a plugin that fails to load raise instead of printing one warning line.
`pip uninstall {{distribution}}` removes it; `GENBENCH_LOAD_PLUGINS=""` runs genbench without any
plugin.

## Use it

{{usage}}

## Test it

```bash
pip install -e ".[test]"
pytest
```

`{{test_file}}` runs genbench's conformance kit (`genbench.testing`) on the {{kind}} and checks
its own behaviour by hand; keep both passing as you change it.

## Make it yours

Everything lives in `{{module}}/__init__.py`: the class `{{class}}` and the hook `{{hook}}` that
registers it. {{edit}}
The name `{{name}}` must stay unique among all installed {{kind}}s (`genbench list {{kind}}s` shows
them). Bump the version in `pyproject.toml` when you release a change.
"""
