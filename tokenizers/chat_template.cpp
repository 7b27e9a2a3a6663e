#include "tokenizers/chat_template.h"

#include <fstream>
#include <sstream>

#include "ir/error.h"

namespace slmops::tok {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) bad_input("{}: cannot be read", p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) failure("{}: read error", p.string());
  return ss.str();
}

ojson read_json(const fs::path& p) {
  try {
    return ojson::parse(read_text(p));
  } catch (const ojson::exception& e) {
    bad_input("{}: not valid JSON: {}", p.string(), e.what());
  }
}

// The special tokens transformers passes to the template (its special_tokens_map): each
// that tokenizer_config.json sets, as a string or an AddedToken's "content".
std::vector<std::pair<std::string, jinja::Value>> special_tokens(const ojson& config, const fs::path& where) {
  std::vector<std::pair<std::string, jinja::Value>> out;
  auto token_text = [&](const ojson& v, const std::string& key) -> std::string {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    bad_input("{}: '{}' must be a string or an object with a \"content\" string", where.string(), key);
  };
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    if (!config.contains(key) || config[key].is_null()) continue;
    out.emplace_back(key, jinja::Value(token_text(config[key], key)));
  }
  if (config.contains("additional_special_tokens") && config["additional_special_tokens"].is_array()) {
    std::vector<jinja::Value> extra;
    for (const auto& v : config["additional_special_tokens"])
      extra.emplace_back(token_text(v, "additional_special_tokens"));
    if (!extra.empty()) out.emplace_back("additional_special_tokens", jinja::Value::list(std::move(extra)));
  }
  return out;
}

std::shared_ptr<const jinja::Template> parse(const std::string& text, const std::string& origin) {
  try {
    return std::make_shared<const jinja::Template>(text);
  } catch (const Error& e) {
    bad_input("{}: {}", origin, e.what());
  }
}

}  // namespace

ChatTemplate ChatTemplate::from_text(const std::string& text, std::string origin, const fs::path& config) {
  ChatTemplate t;
  t.origin_ = origin;
  t.templates_.push_back({"default", origin, parse(text, origin)});
  std::error_code ec;
  if (!config.empty() && fs::exists(config, ec)) t.special_tokens_ = special_tokens(read_json(config), config);
  return t;
}

ChatTemplate ChatTemplate::load(const fs::path& path) {
  std::error_code ec;
  const fs::path dir = fs::is_directory(path, ec) ? path : path.parent_path();
  if (!fs::exists(path, ec)) bad_input("{}: no such file or folder", path.string());
  const fs::path config = dir / "tokenizer_config.json";
  const fs::path jinja_file = dir / "chat_template.jinja";
  ChatTemplate t;
  if (fs::exists(config, ec)) {
    const ojson c = read_json(config);
    t.special_tokens_ = special_tokens(c, config);
    if (!fs::exists(jinja_file, ec) && c.contains("chat_template") && !c["chat_template"].is_null()) {
      const ojson& ct = c["chat_template"];
      const std::string origin = config.string() + ": chat_template";
      if (ct.is_string()) {
        t.templates_.push_back({"default", origin, parse(ct.get<std::string>(), origin)});
      } else if (ct.is_array()) {
        for (const auto& named : ct) {
          if (!named.is_object() || !named.contains("name") || !named["name"].is_string() ||
              !named.contains("template") || !named["template"].is_string())
            bad_input("{}: each entry must be {{\"name\": ..., \"template\": ...}}", origin);
          const std::string name = named["name"].get<std::string>();
          const std::string where = origin + " '" + name + "'";
          t.templates_.push_back({name, where, parse(named["template"].get<std::string>(), where)});
        }
      } else {
        bad_input("{}: must be a string or a list of named templates", origin);
      }
      t.origin_ = origin;
    }
  }
  if (fs::exists(jinja_file, ec)) {
    t.origin_ = jinja_file.string();
    t.templates_ = {{"default", t.origin_, parse(read_text(jinja_file), t.origin_)}};
  }
  if (t.templates_.empty())
    bad_input("{}: no chat template (neither chat_template.jinja nor a \"chat_template\" in tokenizer_config.json)",
              dir.string());
  return t;
}

std::string ChatTemplate::render(const ChatRequest& r) const {
  // transformers: with several named templates, "tool_use" serves a request with tools when
  // there is one, else "default"; a single template serves everything.
  const Named* chosen = &templates_.front();
  if (templates_.size() > 1) {
    const std::string want = !r.tools.is_null() ? "tool_use" : "default";
    const Named* by_name = nullptr;
    const Named* fallback = nullptr;
    for (const auto& n : templates_) {
      if (n.name == want) by_name = &n;
      if (n.name == "default") fallback = &n;
    }
    chosen = by_name ? by_name : fallback;
    if (!chosen)
      bad_input("{}: no template named '{}' or 'default' among the {} named templates", origin_, want,
                templates_.size());
  }
  std::vector<std::pair<std::string, jinja::Value>> vars;
  vars.emplace_back("messages", jinja::from_json(r.messages));
  vars.emplace_back("tools", jinja::from_json(r.tools));
  vars.emplace_back("documents", jinja::from_json(r.documents));
  vars.emplace_back("add_generation_prompt", jinja::Value(r.add_generation_prompt));
  for (const auto& kv : special_tokens_) vars.push_back(kv);
  for (const auto& [k, v] : r.variables) vars.emplace_back(k, jinja::from_json(v));
  try {
    return chosen->tmpl->render(vars);
  } catch (const jinja::Raised&) {
    throw;
  } catch (const Error& e) {
    bad_input("{}: {}", chosen->origin, e.what());
  }
}

}  // namespace slmops::tok
