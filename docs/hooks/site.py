"""MkDocs hooks for `make docs`: pages that live elsewhere in the repository are added to the
site at build time instead of being copied, so there is one source for each text.

- index.md: README.md, its links into docs/ rewritten to the site's paths.
- methods.md: the method guide that the app's Guide page shows (pages/guide.py), read from that
  script's string literals with ``ast`` (the page itself imports Streamlit, which the docs build
  must not run), with every method's settings from its spec.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]


def readme_page() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\(docs/", "](", text)


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def guide_page() -> str:
    import saliency_core

    tree = ast.parse((REPO / "pages" / "guide.py").read_text(encoding="utf-8"))
    notes: dict[str, str] = {}
    out = ["# Method guide", ""]
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "METHOD_NOTES" for t in node.targets):
            notes = ast.literal_eval(node.value)
        elif isinstance(node, ast.For):  # the loop that shows one expander per method
            for spec in saliency_core.methods():
                out += [f"### {spec.label} (`{spec.name}`)", "", f"*{spec.reference}*", "",
                        notes.get(spec.name, spec.description).strip(), ""]
                if spec.params:
                    out += ["**Settings**", ""] + [
                        f"- *{p.label or p.name}* (`{p.name}`): {p.help} Default: `{p.default}`."
                        for p in spec.params] + [""]
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            name = getattr(call.func, "attr", "")
            text = _literal(call.args[0]) if call.args else None
            if text is None:
                continue
            if name == "header":
                out += [f"## {text}", ""]
            elif name in ("markdown", "caption"):
                out += [text.strip(), ""]
    return "\n".join(out)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "index.md", content=readme_page()))
    files.append(File.generated(config, "methods.md", content=guide_page()))
    return files
