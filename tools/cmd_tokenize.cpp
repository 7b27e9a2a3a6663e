// slmops tokenize --tokenizer T [--json] [--no-special] < text
// slmops tokenize --tokenizer T --decode [--skip-special] < ids
// Hugging Face tokenizer.json encode and decode for scripts (tokenizers/tokenizer.h).
#include <cstdio>
#include <iostream>
#include <iterator>

#include "ir/error.h"
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

}  // namespace

void register_tokenize(CLI::App& app) {
  struct Args {
    std::string tokenizer;
    bool json = false, decode = false, skip_special = false, no_special = false;
    std::string chat;
  };
  static Args a;
  auto* cmd = app.add_subcommand("tokenize", "encode text from stdin to token ids (or --decode ids to text) with a "
                                             "Hugging Face tokenizer.json");
  cmd->add_option("--tokenizer", a.tokenizer, "a tokenizer.json, or a folder holding one")->required();
  cmd->add_flag("--json", a.json, "print {\"ids\": [...], \"tokens\": [...]}");
  cmd->add_flag("--decode", a.decode, "read ids from stdin and print the text");
  cmd->add_flag("--skip-special", a.skip_special, "with --decode: drop special tokens");
  cmd->add_flag("--no-special", a.no_special, "do not add the post-processor's special tokens (BOS, ...)");
  cmd->add_option("--chat", a.chat, "render the chat template for MESSAGES.json (not built yet)");
  cmd->callback([] {
    if (!a.chat.empty()) bad_input("--chat: chat templates are not built yet in this version; nothing was read");
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
    std::string line;
    for (size_t k = 0; k < ids.size(); ++k) {
      if (k) line.push_back(' ');
      line += std::to_string(ids[k]);
    }
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), stdout);
  });
}

}  // namespace slmops::cli
