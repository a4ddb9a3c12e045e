"""Language of a file from its name and extension.

One table, easy to extend: add an extension (or an exact file name) to `LANGUAGES`. The
`comment` prefix is used when a file's path is written before it in a repository sample
(DeepSeek-Coder style), and `REPO_LEVEL` names the languages whose files are ordered by
dependency and deduplicated per repository (the five DeepSeek-Coder applied it to).
"""

from __future__ import annotations

import os

# language -> (extensions, exact file names, line-comment prefix)
LANGUAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "python": ((".py", ".pyi"), (), "#"),
    "c": ((".c", ".h"), (), "//"),
    "c++": ((".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx", ".h++", ".c++", ".ipp", ".tcc"), (), "//"),
    "c#": ((".cs",), (), "//"),
    "java": ((".java",), (), "//"),
    "javascript": ((".js", ".mjs", ".cjs", ".jsx"), (), "//"),
    "typescript": ((".ts", ".tsx", ".mts", ".cts"), (), "//"),
    "go": ((".go",), (), "//"),
    "rust": ((".rs",), (), "//"),
    "kotlin": ((".kt", ".kts"), (), "//"),
    "scala": ((".scala", ".sc"), (), "//"),
    "swift": ((".swift",), (), "//"),
    "php": ((".php", ".phtml"), (), "//"),
    "ruby": ((".rb", ".rake", ".gemspec"), ("Rakefile", "Gemfile"), "#"),
    "perl": ((".pl", ".pm", ".t", ".pod"), (), "#"),
    "lua": ((".lua",), (), "--"),
    "r": ((".r", ".R"), (), "#"),
    "julia": ((".jl",), (), "#"),
    "haskell": ((".hs", ".lhs"), (), "--"),
    "ocaml": ((".ml", ".mli"), (), "(*"),
    "elixir": ((".ex", ".exs"), (), "#"),
    "erlang": ((".erl", ".hrl"), (), "%"),
    "clojure": ((".clj", ".cljs", ".cljc", ".edn"), (), ";;"),
    "dart": ((".dart",), (), "//"),
    "shell": ((".sh", ".bash", ".zsh"), (), "#"),
    "powershell": ((".ps1", ".psm1"), (), "#"),
    "sql": ((".sql",), (), "--"),
    "fortran": ((".f", ".f90", ".f95", ".f03", ".for"), (), "!"),
    "assembly": ((".asm", ".s", ".S"), (), ";"),
    "cmake": ((".cmake",), ("CMakeLists.txt",), "#"),
    "makefile": ((".mk", ".mak"), ("Makefile", "GNUmakefile", "makefile"), "#"),
    "dockerfile": ((".dockerfile",), ("Dockerfile",), "#"),
    "html": ((".html", ".htm", ".xhtml"), (), "<!--"),
    "css": ((".css", ".scss", ".sass", ".less"), (), "/*"),
    "xml": ((".xml", ".xsd", ".xsl", ".xslt", ".svg"), (), "<!--"),
    "json": ((".json",), (), "//"),
    "yaml": ((".yaml", ".yml"), (), "#"),
    "toml": ((".toml",), (), "#"),
    "markdown": ((".md", ".markdown"), (), "<!--"),
    "restructuredtext": ((".rst",), (), ".."),
    "tex": ((".tex", ".sty", ".cls"), (), "%"),
    "vim": ((".vim",), (), '"'),
    "protobuf": ((".proto",), (), "//"),
}

REPO_LEVEL = frozenset({"python", "java", "c#", "c", "c++"})

_BY_NAME: dict[str, str] = {}
_BY_EXT: dict[str, str] = {}
for _lang, (_exts, _names, _) in LANGUAGES.items():
    for _e in _exts:
        _BY_EXT.setdefault(_e, _lang)
    for _n in _names:
        _BY_NAME[_n] = _lang


def detect_language(path: str) -> str | None:
    """The language of `path`, or None when neither its name nor its extension is known."""
    name = os.path.basename(path)
    if name in _BY_NAME:
        return _BY_NAME[name]
    _, ext = os.path.splitext(name)
    return _BY_EXT.get(ext) or _BY_EXT.get(ext.lower())


def comment_prefix(language: str) -> str:
    return LANGUAGES[language][2]


def language_slug(language: str) -> str:
    """A file-name-safe form: c++ -> cpp, c# -> csharp."""
    return language.replace("+", "p").replace("#", "sharp")
