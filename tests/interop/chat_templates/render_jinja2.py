#!/usr/bin/python3
"""Reference chat-template renderer: Python's jinja2, set up the way Hugging Face transformers'
apply_chat_template(tokenize=False) sets it up (transformers/utils/chat_template_utils.py
_compile_jinja_template and tokenization_utils_base.py apply_chat_template / get_chat_template).

Run it with Debian's /usr/bin/python3 (python3-jinja2 3.1.2); see README.md.

Usage (the options of `slmops tokenize`):
  render_jinja2.py --tokenizer DIR --chat MESSAGES.json [--add-generation-prompt]
                   [--tools TOOLS.json] [--var NAME=JSON]...
      writes the rendered text to stdout, byte for byte (UTF-8, nothing appended).
      MESSAGES.json "-" is stdin.
  render_jinja2.py --batch CASES.tsv OUTDIR
      one case a line, TAB-separated: ID DIR CHAT AGP(0|1) TOOLS(file or -) [NAME=JSON]...
      writes OUTDIR/ID.out (the text), ID.err (stderr) and ID.rc (the exit code below).
Exit codes: 0 rendered; 2 the template called raise_exception(msg) (a plain
jinja2.exceptions.TemplateError, as transformers raises): msg alone on stderr, one line;
3 any other error while compiling or rendering (TypeError, UndefinedError, TemplateSyntaxError,
SecurityError, ...): "render_jinja2: TYPE: message" on stderr; 1 usage or input error.

What the template sees (transformers' render call):
  messages, tools (None without --tools), documents=None, add_generation_prompt,
  the special tokens (see special_tokens_map below), then every --var (a --var overrides a
  special token of the same name, like transformers' **kwargs).
"""
import json
import os
import sys
from datetime import datetime

try:
    import jinja2
    import jinja2.ext
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError as e:  # pragma: no cover
    sys.stderr.write("render_jinja2: cannot import jinja2 (%s); apt-get install python3-jinja2 and "
                     "run with /usr/bin/python3\n" % e)
    sys.exit(1)


class UsageError(Exception):
    pass


# The special tokens transformers passes (PreTrainedTokenizerBase.special_tokens_map in the
# 4.x releases): the named ones set to a non-empty value, additional_special_tokens as a list of
# strings when non-empty, and (4.47 and later) the named tokens of an `extra_special_tokens`
# dict in tokenizer_config.json (gemma3: boi_token, eoi_token, image_token). Values are strings;
# an AddedToken dict {"content": ...} becomes its content. Transformers 5 drops
# additional_special_tokens from this map; no template here reads it.
NAMED_SPECIAL_TOKENS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                        "cls_token", "mask_token"]


def token_string(value):
    if isinstance(value, dict):
        if "content" not in value:
            raise UsageError("special token without content: %r" % (value,))
        return value["content"]
    if isinstance(value, str):
        return value
    raise UsageError("special token is neither a string nor an AddedToken: %r" % (value,))


def special_tokens_map(config):
    out = {}
    for key in NAMED_SPECIAL_TOKENS:
        value = config.get(key)
        if value is not None:
            s = token_string(value)
            if s:
                out[key] = s
    extra = config.get("extra_special_tokens")
    if isinstance(extra, dict):
        for key, value in extra.items():
            if value is not None:
                s = token_string(value)
                if s:
                    out[key] = s
    additional = config.get("additional_special_tokens")
    if isinstance(additional, list) and additional:
        out["additional_special_tokens"] = [token_string(t) for t in additional]
    return out


def read_json(path, what):
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
        return json.loads(data.decode("utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError("cannot read %s %s: %s" % (what, path, e))


def load_tokenizer_dir(directory):
    """Returns (config, templates): templates is a str, a dict name -> str, or None, as
    transformers holds tokenizer.chat_template after from_pretrained."""
    cfg_path = os.path.join(directory, "tokenizer_config.json")
    config = read_json(cfg_path, "tokenizer config") if os.path.exists(cfg_path) else {}
    if not isinstance(config, dict):
        raise UsageError("%s is not a JSON object" % cfg_path)
    templates = config.get("chat_template")
    if isinstance(templates, list):
        # Saved as a list of {"name", "template"}; transformers rebuilds a dict.
        templates = {t["name"]: t["template"] for t in templates}
    # A chat_template.jinja file replaces whatever tokenizer_config.json holds ("clobbers"), and
    # additional_chat_templates/NAME.jinja adds named templates next to it as "default".
    jinja_file = os.path.join(directory, "chat_template.jinja")
    if os.path.isfile(jinja_file):
        with open(jinja_file, "rb") as f:
            templates = f.read().decode("utf-8")
    extra_dir = os.path.join(directory, "additional_chat_templates")
    if os.path.isdir(extra_dir):
        names = sorted(n for n in os.listdir(extra_dir) if n.endswith(".jinja"))
        if names:
            if isinstance(templates, str):
                templates = {"default": templates}
            elif templates is None:
                templates = {}
            for n in names:
                with open(os.path.join(extra_dir, n), "rb") as f:
                    templates[n[:-len(".jinja")]] = f.read().decode("utf-8")
    return config, templates


def select_template(templates, tools):
    """transformers' get_chat_template(chat_template=None, tools)."""
    if isinstance(templates, dict):
        if tools is not None and "tool_use" in templates:
            return templates["tool_use"]
        if "default" in templates:
            return templates["default"]
        raise UsageError("This model has multiple chat templates with no default specified! Available "
                         "template names are %s." % sorted(templates.keys()))
    if templates is None:
        raise UsageError("Cannot use chat template functions because tokenizer.chat_template is not set")
    return templates


class GenerationTracker(Extension):
    """transformers' AssistantTracker without the index bookkeeping: {% generation %}...
    {% endgeneration %} renders its body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers replaces jinja2's tojson (which HTML-escapes and sorts keys).
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


_compiled = {}


def compile_template(source):
    if source not in _compiled:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[GenerationTracker, jinja2.ext.loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = strftime_now
        _compiled[source] = env.from_string(source)
    return _compiled[source]


_dirs = {}


def render_case(directory, chat, agp, tools_file, var_args):
    """Returns (rc, stdout_bytes, stderr_text)."""
    try:
        if directory not in _dirs:
            _dirs[directory] = load_tokenizer_dir(directory)
        config, templates = _dirs[directory]
        messages = read_json(chat, "messages")
        tools = read_json(tools_file, "tools") if tools_file is not None else None
        extra = {}
        for v in var_args:
            name, sep, value = v.partition("=")
            if not sep or not name:
                raise UsageError("--var wants NAME=JSON, got %r" % v)
            try:
                extra[name] = json.loads(value)
            except ValueError as e:
                raise UsageError("--var %s: not JSON: %s" % (name, e))
        source = select_template(templates, tools)
        kwargs = dict(special_tokens_map(config))
        kwargs.update(extra)
    except UsageError as e:
        return 1, b"", "render_jinja2: %s\n" % e
    try:
        template = compile_template(source)
        text = template.render(messages=messages, tools=tools, documents=None,
                               add_generation_prompt=agp, **kwargs)
    except jinja2.exceptions.TemplateError as e:
        if type(e) is jinja2.exceptions.TemplateError:  # raise_exception()
            return 2, b"", "%s\n" % (e.message if e.message is not None else "")
        return 3, b"", "render_jinja2: %s: %s\n" % (type(e).__name__, e)
    except Exception as e:  # noqa: BLE001 - the oracle reports whatever Python raised
        return 3, b"", "render_jinja2: %s: %s\n" % (type(e).__name__, e)
    return 0, text.encode("utf-8"), ""


def parse_args(argv):
    opts = {"tokenizer": None, "chat": None, "agp": False, "tools": None, "vars": []}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--tokenizer", "--chat", "--tools", "--var"):
            if i + 1 >= len(argv):
                raise UsageError("%s needs a value" % a)
            val = argv[i + 1]
            i += 2
            if a == "--var":
                opts["vars"].append(val)
            else:
                opts[a[2:]] = val
            continue
        if a == "--add-generation-prompt":
            opts["agp"] = True
        else:
            raise UsageError("unknown argument %s" % a)
        i += 1
    if opts["tokenizer"] is None or opts["chat"] is None:
        raise UsageError("usage: render_jinja2.py --tokenizer DIR --chat MESSAGES.json "
                         "[--add-generation-prompt] [--tools TOOLS.json] [--var NAME=JSON]...")
    return opts


def batch(cases_file, outdir):
    os.makedirs(outdir, exist_ok=True)
    with open(cases_file, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) < 5:
                raise UsageError("bad case line: %r" % line)
            case_id, directory, chat, agp, tools = fields[:5]
            rc, out, err = render_case(directory, chat, agp == "1", None if tools == "-" else tools, fields[5:])
            base = os.path.join(outdir, case_id)
            with open(base + ".out", "wb") as o:
                o.write(out)
            with open(base + ".err", "w", encoding="utf-8") as o:
                o.write(err)
            with open(base + ".rc", "w") as o:
                o.write("%d\n" % rc)


def main(argv):
    try:
        if argv[:1] == ["--batch"]:
            if len(argv) != 3:
                raise UsageError("usage: render_jinja2.py --batch CASES.tsv OUTDIR")
            batch(argv[1], argv[2])
            return 0
        opts = parse_args(argv)
    except UsageError as e:
        sys.stderr.write("render_jinja2: %s\n" % e)
        return 1
    rc, out, err = render_case(opts["tokenizer"], opts["chat"], opts["agp"], opts["tools"], opts["vars"])
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    sys.stderr.write(err)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
