"""Pygments lexer for mmdbg: shell commands and bpftrace-style probe programs.

Registered under the ``pygments.lexers`` entry point (``pyproject.toml``), so
``pygmentize -l mmdbg script.mmbt`` colours a command file, and used by the REPL through
``PygmentsLexer(MmdbgLexer)``.  Every character is covered by a rule (no ``Error`` tokens on
valid input), which a test checks on the example scripts.
"""

from __future__ import annotations

from typing import ClassVar

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

PROVIDERS = ("kprobe", "kretprobe", "fentry", "fexit", "tracepoint", "rawtracepoint",
             "interval", "profile", "software", "watchpoint", "hardware", "uprobe",
             "uretprobe", "usdt", "k", "kr", "f", "fr", "t", "i", "s", "w", "h")

BUILTIN_FUNCS = ("count", "sum", "avg", "min", "max", "stats", "hist", "lhist", "printf",
                 "print", "clear", "zero", "delete", "exit", "stop", "time", "join", "str",
                 "ksym", "kaddr", "kstack", "ustack", "ntop", "override", "signal", "system",
                 "sizeof", "offsetof", "strncmp", "buf", "cat", "len", "has_key", "pfn_to_page",
                 "page_to_pfn", "page_zone", "macro", "bswap", "strerror", "unroll")

BUILTIN_VARS = ("args", "retval", "comm", "pid", "tid", "uid", "gid", "cpu", "nsecs",
                "elapsed", "curtask", "probe", "func", "kstack", "ustack", "arg0", "arg1",
                "arg2", "arg3", "arg4", "arg5", "rand", "cgroup", "numaid", "jiffies",
                "username", "ncpus")

SHELL_KEYWORDS = ("break", "tbreak", "condition", "ignore", "commands", "end", "delete",
                  "disable", "enable", "watch", "rwatch", "awatch", "continue", "run",
                  "step", "next", "finish", "until", "advance", "interrupt", "bt", "frame",
                  "up", "down", "info", "p", "px", "print", "struct", "kmem", "ps", "set",
                  "vm", "vtop", "ptov", "rd", "wr", "search", "log", "sys", "foreach", "cat",
                  "echo", "ls", "mkdir", "rmdir", "sysctl", "help", "alias", "source", "probes",
                  "detach", "clear", "pmap", "free", "vmstat", "numastat", "perf", "trace-cmd",
                  "scenario", "call", "quit", "exit", "silent", "if")


class MmdbgLexer(RegexLexer):
    """mmdbg shell commands and probe programs (bpftrace dialect)."""

    name = "mmdbg"
    aliases: ClassVar[list[str]] = ["mmdbg", "mmbt"]
    filenames: ClassVar[list[str]] = ["*.mmbt", "*.mmdbg", "*.cmd"]
    mimetypes: ClassVar[list[str]] = ["text/x-mmdbg"]

    tokens: ClassVar[dict] = {
        "root": [
            (r"\n", Whitespace),
            (r"[ \t]+", Whitespace),
            (r"//.*?$", Comment.Single),
            (r"#.*?$", Comment.Single),
            (r"/\*", Comment.Multiline, "comment"),
            (r"\b(BEGIN|END|begin|end)\b", Keyword.Reserved),
            (r"(" + "|".join(PROVIDERS) + r")(:)([\w:*.+/-]*)",
             bygroups(Keyword.Namespace, Punctuation, Name.Function)),
            (r"\b(if|else|while|for|return|unroll|let|config|macro|import)\b", Keyword),
            (words(BUILTIN_FUNCS, suffix=r"(?=\s*\()"), Name.Builtin),
            (words(BUILTIN_VARS, suffix=r"\b"), Name.Builtin.Pseudo),
            (words(SHELL_KEYWORDS, prefix=r"(?<![\w.$@-])", suffix=r"(?![\w-])"), Keyword),
            include("common"),
        ],
        "common": [
            (r'"(\\\\|\\"|[^"])*"', String.Double),
            (r"'(\\\\|\\'|[^'])*'", String.Single),
            (r"@\w*", Name.Variable.Global),
            (r"\$\w*", Name.Variable),
            (r"0[xX][0-9a-fA-F]+[uUlL]*", Number.Hex),
            (r"\d+(\.\d+)?(ns|us|ms|s|sec|min|[KMG])?\b", Number),
            (r"-[A-Za-z][\w-]*", Name.Attribute),  # options: -f, -lv
            (r"(->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>=?])", Operator),
            (r"[{}()\[\];,.:]", Punctuation),
            (r"[A-Za-z_][\w]*", Name),
            (r"[^\s\w]", Text),
        ],
        "comment": [
            (r"[^*/]+", Comment.Multiline),
            (r"\*/", Comment.Multiline, "#pop"),
            (r"[*/]", Comment.Multiline),
        ],
    }
