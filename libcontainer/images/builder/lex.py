"""Dockerfile words: quotes, the escape character and `$VAR` / `${VAR}` / `${VAR:-word}` /
`${VAR:+word}` / `${VAR-word}` / `${VAR+word}` / `${VAR:?msg}` substitution, as Docker's
shell lexer (buildkit frontend/dockerfile/shell) does for the instructions that expand
variables (FROM, ADD, COPY, ENV, ARG, LABEL, EXPOSE, STOPSIGNAL, USER, VOLUME, WORKDIR).
RUN, CMD and ENTRYPOINT are left to the shell in the container."""
from __future__ import annotations

_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


class LexError(ValueError):
    pass


class _Lexer:
    def __init__(self, text: str, env: dict, escape: str):
        self.s, self.i, self.env, self.esc = text, 0, env, escape

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1
        return ch

    def words(self, split: bool) -> list:
        """→ [(word, was_quoted_or_had_text)]; whitespace splits when `split`."""
        out: list = []
        cur: list = []
        started = False
        while self.i < len(self.s):
            ch = self.next()
            if split and ch in " \t\r\n":
                if started:
                    out.append("".join(cur))
                    cur, started = [], False
                continue
            started = True
            if ch == self.esc:
                nxt = self.next()
                cur.append(nxt)  # an escape at the very end is dropped, as Docker does
            elif ch == "'":
                cur.append(self._until_quote())
            elif ch == '"':
                cur.append(self._double())
            elif ch == "$":
                cur.append(self._dollar())
            else:
                cur.append(ch)
        if started:
            out.append("".join(cur))
        return out

    def _until_quote(self) -> str:
        j = self.s.find("'", self.i)
        if j < 0:
            raise LexError("unexpected end of statement while looking for matching single-quote")
        text, self.i = self.s[self.i:j], j + 1
        return text

    def _double(self) -> str:
        cur = []
        while True:
            if self.i >= len(self.s):
                raise LexError("unexpected end of statement while looking for matching double-quote")
            ch = self.next()
            if ch == '"':
                return "".join(cur)
            if ch == self.esc:
                nxt = self.peek()
                if nxt in ('"', "$", self.esc):
                    cur.append(self.next())
                else:
                    cur.append(ch)
            elif ch == "$":
                cur.append(self._dollar())
            else:
                cur.append(ch)

    def _name(self) -> str:
        start = self.i
        while self.peek() and self.peek() in _NAME:
            self.i += 1
        return self.s[start:self.i]

    def _dollar(self) -> str:
        if self.peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self.env.get(name, "")
        self.i += 1
        name = self._name()
        if not name:
            raise LexError("bad substitution: ${ must be followed by a variable name")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise LexError(f"unsupported modifier ({ch or 'end'}) in substitution of {name}")
        word = self._word_until_brace()
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set else word
        if ch == "+":
            return word if is_set else ""
        if not is_set:
            raise LexError(f"{name}: {word or 'is not allowed to be unset'}")
        return value

    def _word_until_brace(self) -> str:
        cur = []
        while True:
            if self.i >= len(self.s):
                raise LexError("syntax error: missing '}'")
            ch = self.next()
            if ch == "}":
                return "".join(cur)
            if ch == self.esc:
                cur.append(self.next())
            elif ch == "$":
                cur.append(self._dollar())
            elif ch == "'":
                cur.append(self._until_quote())
            elif ch == '"':
                cur.append(self._double())
            else:
                cur.append(ch)


def word(text: str, env: dict, escape: str = "\\") -> str:
    """One word: quotes removed, variables expanded (no splitting)."""
    out = _Lexer(text, env, escape).words(split=False)
    return out[0] if out else ""


def words(text: str, env: dict, escape: str = "\\") -> list:
    """Whitespace-separated words, each processed as `word` does."""
    return _Lexer(text, env, escape).words(split=True)


def split_raw(text: str, escape: str = "\\") -> list:
    """Whitespace-separated words with quotes and escapes kept (for KEY=VALUE pairs, whose
    values are processed later, each on its own)."""
    out, cur, quote, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == escape and quote != "'" and i + 1 < len(text):
            cur += [ch, text[i + 1]]
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in " \t\r\n":
            if cur:
                out.append("".join(cur))
                cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    if quote:
        raise LexError(f"unmatched {quote} quote")
    if cur:
        out.append("".join(cur))
    return out
