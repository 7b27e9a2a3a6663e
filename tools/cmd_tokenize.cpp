// slmops tokenize --tokenizer T [--json] [--no-special] < text
// slmops tokenize --tokenizer T --decode [--skip-special] < ids
// slmops tokenize --tokenizer T --chat MESSAGES.json [--add-generation-prompt] [--ids]
//                 [--tools TOOLS.json] [--var NAME=JSON]... [--template FILE]
// Hugging Face tokenizer.json encode and decode for scripts (tokenizers/tokenizer.h), and
// chat templates rendered as transformers' apply_chat_template (tokenizers/chat_template.h).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "ir/error.h"
#include "tokenizers/chat_template.h"
#include "tokenizers/tokenizer.h"
#include "tools/cli.h"

namespace slmops::cli {

namespace {

std::string read_stdin() {
  std::string s;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) s.append(buf, n);
  if (std::ferror(stdin)) failure("stdin: read error");
  return s;
}

// Ids separated by spaces, commas or newlines, or a JSON array.
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  auto sep = [](char c) { return c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t' || c == '[' || c == ']'; };
  while (i < s.size()) {
    while (i < s.size() && sep(s[i])) ++i;
    if (i >= s.size()) break;
    size_t j = i;
    while (j < s.size() && !sep(s[j])) ++j;
    const std::string word = s.substr(i, j - i);
    try {
      size_t used = 0;
      long long v = std::stoll(word, &used);
      if (used != word.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument("x");
      ids.push_back(static_cast<int32_t>(v));
    } catch (const std::exception&) {
      bad_input("stdin: '{}' is not a token id (ids are non-negative integers separated by spaces, commas or "
                "newlines)",
                word.substr(0, 40));
    }
    i = j;
  }
  return ids;
}

std::string read_file_or_stdin(const std::string& path, const char* option) {
  if (path == "-") return read_stdin();
  std::ifstream f(path, std::ios::binary);
  if (!f) bad_input("{} {}: cannot be read", option, path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::ordered_json parse_json_arg(const std::string& text, const std::string& where) {
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::ordered_json::exception& e) {
    bad_input("{}: not valid JSON: {}", where, e.what());
  }
}

// The chat request of --chat: MESSAGES.json is a list of messages (or {"messages": [...]}, a
// chat row of a .jsonl file).
tok::ChatRequest chat_request(const std::string& messages_path, const std::string& tools_path,
                              const std::vector<std::string>& vars, bool add_generation_prompt) {
  tok::ChatRequest r;
  const std::string where = messages_path == "-" ? "stdin" : messages_path;
  nlohmann::ordered_json m = parse_json_arg(read_file_or_stdin(messages_path, "--chat"), where);
  if (m.is_object() && m.contains("messages")) m = m["messages"];
  if (!m.is_array()) bad_input("{}: expected a JSON list of messages ({{\"role\": ..., \"content\": ...}})", where);
  for (size_t k = 0; k < m.size(); ++k)
    if (!m[k].is_object()) bad_input("{}: message {} is not a JSON object", where, k);
  r.messages = std::move(m);
  if (!tools_path.empty()) {
    r.tools = parse_json_arg(read_file_or_stdin(tools_path, "--tools"), tools_path);
    if (!r.tools.is_array()) bad_input("--tools {}: expected a JSON list of tool definitions", tools_path);
  }
  r.add_generation_prompt = add_generation_prompt;
  for (const std::string& v : vars) {
    const size_t eq = v.find('=');
    if (eq == std::string::npos || eq == 0) bad_input("--var '{}': expected NAME=JSON (e.g. enable_thinking=false)", v);
    const std::string name = v.substr(0, eq);
    r.variables.emplace_back(name, parse_json_arg(v.substr(eq + 1), "--var " + name));
  }
  return r;
}

void print_ids(const std::vector<int32_t>& ids) {
  std::string line;
  for (size_t k = 0; k < ids.size(); ++k) {
    if (k) line.push_back(' ');
    line += std::to_string(ids[k]);
  }
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stdout);
}

}  // namespace

void register_tokenize(CLI::App& app) {
  struct Args {
    std::string tokenizer;
    bool json = false, decode = false, skip_special = false, no_special = false;
    std::string chat, tools, template_file;
    std::vector<std::string> vars;
    bool add_generation_prompt = false, ids = false;
  };
  static Args a;
  auto* cmd = app.add_subcommand("tokenize", "encode text from stdin to token ids (or --decode ids to text) with a "
                                             "Hugging Face tokenizer.json");
  cmd->add_option("--tokenizer", a.tokenizer, "a tokenizer.json, or a folder holding one")->required();
  cmd->add_flag("--json", a.json, "print {\"ids\": [...], \"tokens\": [...]}");
  cmd->add_flag("--decode", a.decode, "read ids from stdin and print the text");
  cmd->add_flag("--skip-special", a.skip_special, "with --decode: drop special tokens");
  cmd->add_flag("--no-special", a.no_special, "do not add the post-processor's special tokens (BOS, ...)");
  cmd->add_option("--chat", a.chat,
                  "render the chat template (chat_template.jinja or tokenizer_config.json's) for MESSAGES.json, a JSON "
                  "list of {\"role\", \"content\"} ('-': stdin)");
  cmd->add_flag("--add-generation-prompt", a.add_generation_prompt,
                "with --chat: end with the assistant's turn header");
  cmd->add_flag("--ids", a.ids, "with --chat: print the token ids of the rendered text (no special tokens added)");
  cmd->add_option("--tools", a.tools, "with --chat: a JSON list of tool (function) definitions passed as `tools`");
  cmd->add_option("--var", a.vars, "with --chat: an extra template variable NAME=JSON (e.g. enable_thinking=false)");
  cmd->add_option("--template", a.template_file,
                  "with --chat: render this Jinja file instead of the tokenizer's template");
  cmd->callback([] {
    if (a.chat.empty() &&
        (a.add_generation_prompt || a.ids || !a.tools.empty() || !a.vars.empty() || !a.template_file.empty()))
      bad_input("--add-generation-prompt, --ids, --tools, --var and --template need --chat MESSAGES.json");
    if (!a.chat.empty()) {
      if (a.decode || a.json || a.skip_special || a.no_special)
        bad_input(
            "--chat renders a chat template; it does not combine with --decode, --json, --skip-special or "
            "--no-special");
      if (a.chat == "-" && a.tools == "-") bad_input("--chat and --tools cannot both read stdin");
      const tok::ChatRequest request = chat_request(a.chat, a.tools, a.vars, a.add_generation_prompt);
      const std::filesystem::path dir = std::filesystem::is_directory(a.tokenizer)
                                            ? std::filesystem::path(a.tokenizer)
                                            : std::filesystem::path(a.tokenizer).parent_path();
      const tok::ChatTemplate chat =
          a.template_file.empty() ? tok::ChatTemplate::load(a.tokenizer)
                                  : tok::ChatTemplate::from_text(read_file_or_stdin(a.template_file, "--template"),
                                                                 a.template_file, dir / "tokenizer_config.json");
      std::string text;
      try {
        text = chat.render(request);
      } catch (const jinja::Raised& e) {
        bad_input("{}: the chat template raised an exception: {}", chat.origin(), e.what());
      }
      if (!a.ids) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        return;
      }
      print_ids(tok::Tokenizer::load(a.tokenizer).encode(text, false));
      return;
    }
    if (a.skip_special && !a.decode) bad_input("--skip-special needs --decode");
    if (a.no_special && a.decode) bad_input("--no-special is for encoding; with --decode use --skip-special");
    const tok::Tokenizer t = tok::Tokenizer::load(a.tokenizer);
    const std::string in = read_stdin();
    if (a.decode) {
      const std::vector<int32_t> ids = parse_ids(in);
      for (int32_t id : ids)
        if (static_cast<size_t>(id) >= t.vocab_size())
          bad_input("stdin: token id {} is outside the vocabulary of {} ({} tokens)", id, a.tokenizer, t.vocab_size());
      const std::string text = t.decode(ids, a.skip_special);
      std::fwrite(text.data(), 1, text.size(), stdout);
      return;
    }
    const std::vector<int32_t> ids = t.encode(in, !a.no_special);
    if (a.json) {
      nlohmann::json j = {{"ids", ids}, {"tokens", nlohmann::json::array()}};
      for (int32_t id : ids) j["tokens"].push_back(t.token(id));
      print_json(j);
      return;
    }
    print_ids(ids);
  });
}

}  // namespace slmops::cli
