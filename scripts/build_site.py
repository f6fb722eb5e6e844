"""Build the course website (MkDocs Material) from the executed notebooks and the toolkit's docstrings.

    python scripts/build_site.py            # make site -> build/site (open build/site/index.html)

Stages the pages under build/site-src, then runs ``mkdocs build --strict`` with build/mkdocs.yml, a
config that inherits the repository's mkdocs.yml and adds the paths and the navigation:

- Home: README.md (the course table, the set-up, the toolkit's tour); Contributing: CONTRIBUTING.md.
- Course: the student edition of every notebook in order (scripts/editions.py: solution cells
  removed), rendered by mkdocs-jupyter from its committed outputs; nothing is executed.
- Datasets: datasets/README.md, every datasheet and the split manifests.
- API reference: one page per public subpackage (or module) of ``toolkit``, listed at build time,
  rendered from the docstrings by mkdocstrings (its ``__all__`` is what the page shows).

Nothing is fetched: MathJax comes from the django-static-mathjax package, the theme uses the system
fonts, and search works from disk (Material's offline plugin). Prints the build time and page count.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import yaml

from editions import write_edition  # scripts/editions.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toolkit"
EDITION = "student"  # the site is public: it never shows the answers


def public_modules() -> list[str]:
    """``toolkit``'s public subpackages and top-level modules (``toolkit.calibration``, ``toolkit.cli``...)."""
    return sorted(f"toolkit.{info.name}" for info in pkgutil.iter_modules([str(PACKAGE)])
                  if not info.name.startswith("_"))


def _module_file(name: str) -> Path:
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _summary(name: str) -> str:
    """First line of the module's docstring (read with ast: nothing is imported)."""
    docstring = ast.get_docstring(ast.parse(_module_file(name).read_text(encoding="utf-8"))) or ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def unseen_exports(name: str) -> dict[str, str]:
    """Names in the module's ``__all__`` that mkdocstrings' static reader cannot see as themselves, by
    where they are defined: loaded on first use by the package's ``__getattr__``, or shadowed by a
    submodule of the same name (``toolkit.training.fit``). Their page documents them at that place."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # this checkout's toolkit, as the reference documents it
    module = importlib.import_module(name)
    unseen = {}
    bound = _static_names(module)
    for member in getattr(module, "__all__", []):
        lazy = member not in bound  # not whether it was loaded already: earlier imports must not change the site
        shadowed = hasattr(module, "__path__") and any(
            (Path(folder) / f"{member}.py").exists() or (Path(folder) / member).is_dir() for folder in module.__path__)
        if lazy or shadowed:
            unseen[member] = defined_at(module, member)
    return unseen


def _static_names(module) -> set[str]:
    """Names bound at the top level of the module's source (imports, assignments, definitions): what a
    static reader such as mkdocstrings sees, whatever the running process has loaded on first use since."""
    import ast

    tree = ast.parse(Path(module.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def defined_at(module, member: str) -> str:
    """Dotted path where ``module.member`` is defined: a class or function's own, a constant's submodule."""
    obj = getattr(module, member)
    if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    owners = [name for name, sub in sorted(sys.modules.items()) if name.startswith(f"{module.__name__}.")
              and sub is not None and vars(sub).get(member) is obj and member in getattr(sub, "__all__", [member])]
    return f"{owners[0]}.{member}" if owners else f"{module.__name__}.{member}"


def _title(markdown: str, fallback: str) -> str:
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def stage(stage_dir: Path, notebooks: list[Path]) -> list:
    """Write the site's pages under ``stage_dir``; return the navigation."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    shutil.copyfile(ROOT / "README.md", stage_dir / "index.md")
    shutil.copyfile(ROOT / "CONTRIBUTING.md", stage_dir / "CONTRIBUTING.md")

    course = []
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        write_edition(notebook, path.stem, stage_dir / "notebooks", EDITION, formats=("ipynb",))
        first = next((cell.source for cell in notebook.cells if cell.cell_type == "markdown"), "")
        course.append({_title(first, path.stem): f"notebooks/{path.name}"})

    shutil.copytree(ROOT / "datasets", stage_dir / "datasets")
    datasheets = sorted(p for p in (stage_dir / "datasets").glob("*.md") if p.name != "README.md")
    datasets = ["datasets/README.md"] + [{_title(p.read_text(encoding="utf-8"), p.stem): f"datasets/{p.name}"}
                                         for p in datasheets]

    reference_dir = stage_dir / "reference"
    reference_dir.mkdir()
    modules = public_modules()
    rows = "\n".join(f"| [`{name}`]({name}.md) | {_summary(name)} |" for name in modules)
    (reference_dir / "index.md").write_text(
        "# API reference\n\nOne page per package of the toolkit, from its docstrings. Every public name "
        "is re-exported by its package (``from toolkit.calibration import TemperatureScaling``).\n\n"
        f"| package | what it is |\n|---|---|\n{rows}\n", encoding="utf-8")
    for name in modules:
        extra = "".join(f"\n::: {path}\n    options:\n      heading_level: 2\n"
                        for path in unseen_exports(name).values())
        (reference_dir / f"{name}.md").write_text(f"::: {name}\n{extra}", encoding="utf-8")
    reference = ["reference/index.md"] + [{name: f"reference/{name}.md"} for name in modules]

    import mathjax  # the django-static-mathjax package: MathJax 3 as files, for the notebooks' formulas, offline

    shutil.copytree(Path(mathjax.__file__).parent / "static" / "mathjax" / "es5", stage_dir / "assets" / "mathjax")
    shutil.copytree(ROOT / "docs" / "assets", stage_dir / "assets", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("README.md"))
    return [{"Home": "index.md"}, {"Course": course}, {"Datasets": datasets}, {"API reference": reference},
            {"Contributing": "CONTRIBUTING.md"}]


def count_pages(site_dir: Path) -> int:
    """HTML pages of the built site (its search index lists one location per page, plus sections)."""
    index = json.loads((site_dir / "search" / "search_index.json").read_text(encoding="utf-8"))
    return len({doc["location"].split("#")[0] for doc in index["docs"]})


def build(out: Path, notebooks: list[Path]) -> dict:
    """Stage and build the site into ``out/site``; return the build time, the page count and the paths."""
    start = time.perf_counter()
    stage_dir, site_dir, config = out / "site-src", out / "site", out / "mkdocs.yml"
    nav = stage(stage_dir, notebooks)
    config.write_text(yaml.safe_dump({"INHERIT": str(ROOT / "mkdocs.yml"), "docs_dir": str(stage_dir),
                                      "site_dir": str(site_dir), "nav": nav,
                                      "hooks": [str(ROOT / "scripts" / "site_hooks.py")]}, sort_keys=False), encoding="utf-8")
    # the toolkit's source, not an installed copy, is what the reference documents
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--config-file", str(config)]
    # the reference documents this checkout's toolkit, whatever copy the environment has installed
    # (unseen_exports imports it in this process: run from the checkout, or with it on PYTHONPATH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"mkdocs build failed:\n{result.stdout}\n{result.stderr}")
    return {"seconds": time.perf_counter() - start, "pages": count_pages(site_dir), "site": site_dir,
            "modules": public_modules(), "notebooks": [p.stem for p in notebooks]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path,
                        default=sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="folder for site-src/, site/, mkdocs.yml")
    args = parser.parse_args()
    try:
        built = build(args.out.resolve(), [p.resolve() for p in args.notebooks])
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"site: {built['pages']} pages in {built['seconds']:.0f} s -> {built['site'] / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
