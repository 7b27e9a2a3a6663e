// A model's chat template, rendered as transformers' apply_chat_template renders it: the
// template from the tokenizer folder (chat_template.jinja, else tokenizer_config.json's
// "chat_template": a string, or a list of named templates where "tool_use" serves requests
// with tools), with the variables transformers passes: messages, tools (None when absent),
// documents (None), add_generation_prompt, the special tokens of tokenizer_config.json
// (bos_token, eos_token, ...), and the caller's extra variables.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "tokenizers/jinja/template.h"

namespace slmops::tok {

struct ChatRequest {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;  // null: no tools
  nlohmann::ordered_json documents;
  bool add_generation_prompt = false;
  std::vector<std::pair<std::string, nlohmann::ordered_json>> variables;  // extra template variables
};

class ChatTemplate {
 public:
  // `path`: a tokenizer folder (or a file inside it: tokenizer.json / tokenizer_config.json).
  // Throws Error(BadInput) naming the file when it has no chat template or the template does
  // not parse.
  static ChatTemplate load(const std::filesystem::path& path);
  // A template given as text (`origin` names it in errors), with the special tokens of the
  // tokenizer_config.json at `config` (none when empty).
  static ChatTemplate from_text(const std::string& text, std::string origin, const std::filesystem::path& config = {});

  // The rendered text. Throws jinja::Raised with the template's message when it calls
  // raise_exception, Error(BadInput) "<origin>: line N: ..." for other errors.
  std::string render(const ChatRequest& request) const;
  const std::string& origin() const { return origin_; }

 private:
  struct Named {
    std::string name;
    std::string origin;
    std::shared_ptr<const jinja::Template> tmpl;
  };
  std::vector<Named> templates_;  // one (the default), or several by name
  std::string origin_;
  std::vector<std::pair<std::string, jinja::Value>> special_tokens_;
};

}  // namespace slmops::tok
