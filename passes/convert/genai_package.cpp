// The step package-genai (onnx-model -> package): a decoder built from a checkpoint (from-hf)
// written as the folder ONNX Runtime GenAI loads (model.onnx + model.onnx.data,
// genai_config.json, the tokenizer files), and for Foundry Local also inference_model.json
// (Name, PromptTemplate from the chat template). Every package has manifest.json with the
// sha256 of each file and the slmops version.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "formats/file_util.h"
#include "formats/onnx_io.h"
#include "formats/sha256.h"
#include "ir/error.h"
#include "passes/convert/hf_decoder.h"
#include "passes/registry.h"
#include "tokenizers/chat_template.h"

namespace slmops::passes {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

struct GenaiOptions {
  std::string flavor = "genai";
  std::string name;
  std::string external_data = "always";
  static const OptionTable<GenaiOptions>& table() {
    static const OptionTable<GenaiOptions> t({
        {"flavor",
         &GenaiOptions::flavor,
         "genai: ONNX Runtime GenAI's folder; foundry-local: also inference_model.json; plain: the model with the "
         "checkpoint's config, generation config and tokenizer files (what transformers.js and slmops generate load)",
         {"genai", "foundry-local", "plain"}},
        {"name",
         &GenaiOptions::name,
         "the model's name in inference_model.json (default: the checkpoint folder's)",
         {}},
        {"external-data",
         &GenaiOptions::external_data,
         "weights in model.onnx.data (always, as GenAI's builder) or not",
         {"auto", "always", "never"}},
    });
    return t;
  }
};

json read_json_file(const fs::path& p) {
  json j = json::parse(formats::read_text_file(p), nullptr, false);
  if (j.is_discarded() || !j.is_object()) bad_input("{}: not valid JSON", p.string());
  return j;
}

// An id (or the first of a list) under `key` in the first of `sources` that has one.
std::optional<json> token_id(const std::vector<const json*>& sources, const char* key) {
  for (const json* s : sources)
    if (s && s->contains(key) && !(*s)[key].is_null()) return (*s)[key];
  return std::nullopt;
}

// Foundry Local's PromptTemplate: the chat template rendered around a {Content} placeholder.
ojson prompt_template(const tok::ChatTemplate& t) {
  auto render = [&](ojson messages, bool agp) -> std::optional<std::string> {
    tok::ChatRequest r;
    r.messages = std::move(messages);
    r.add_generation_prompt = agp;
    try {
      return t.render(r);
    } catch (const Error&) {
      return std::nullopt;  // a template may refuse a lone system turn, say
    }
  };
  auto turn = [](const char* role, const char* content) { return ojson{{"role", role}, {"content", content}}; };
  ojson out = ojson::object();
  // A role's entry only when the template writes that turn's content where it stands (a
  // template that folds the system message into the first user turn has no system entry).
  auto has_content = [](const std::optional<std::string>& s) { return s && s->find("{Content}") != std::string::npos; };
  if (auto s = render(ojson::array({turn("system", "{Content}")}), false); has_content(s)) out["system"] = *s;
  if (auto u = render(ojson::array({turn("user", "{Content}")}), false); has_content(u)) out["user"] = *u;
  const auto before = render(ojson::array({turn("user", "{User}")}), false);
  const auto both = render(ojson::array({turn("user", "{User}"), turn("assistant", "{Content}")}), false);
  if (before && both && both->compare(0, before->size(), *before) == 0 && has_content(both->substr(before->size())))
    out["assistant"] = both->substr(before->size());
  const auto prompt = render(ojson::array({turn("user", "{Content}")}), true);
  if (!prompt) bad_input("package-genai: the chat template does not render one user turn");
  out["prompt"] = *prompt;
  return out;
}

void package_genai(Artifact& a, const json& j, PassContext& ctx) {
  const GenaiOptions o = GenaiOptions::table().from_json(j);
  ir::Model& m = *a.model;
  const fs::path config = m.path.empty() ? fs::path() : fs::path(m.path);
  if (config.filename() != "config.json" || !formats::path_exists(config))
    bad_input(
        "package-genai: the model must be built from a Hugging Face checkpoint (the from-hf step), whose "
        "config.json and tokenizer files go into the package");
  if (ctx.scratch.empty()) bad_input("package-genai: this caller gives the step no folder to write");
  const fs::path src = config.parent_path();
  const DecoderConfig c = read_decoder_config(src);
  const json cfg = read_json_file(config);
  const json gen = formats::path_exists(src / "generation_config.json") ? read_json_file(src / "generation_config.json")
                                                                        : json::object();

  formats::SaveOptions so;
  formats::parse_external_data(o.external_data, so.external);
  so.sha256 = true;  // the data file's digest computed beside the writing, not by reading it back
  const auto saved = formats::save_model(m, ctx.scratch / "model.onnx", so);
  std::vector<std::pair<std::string, std::string>> files = {{"model.onnx", "model"}};
  if (!saved.data_file.empty()) files.emplace_back(fs::path(saved.data_file).filename().string(), "external-data");

  // The decoder's context: the positions its rotary tables cover (the builder records them)
  // bound max_length.
  int64_t context = c.max_positions;
  for (const auto& [key, value] : m.metadata)
    if (key == "slmops.context_length") context = std::min(context, static_cast<int64_t>(std::stoll(value)));
  const std::vector<const json*> id_sources = {&gen, &cfg};
  const json eos = token_id(id_sources, "eos_token_id").value_or(json(nullptr));
  const json bos = token_id(id_sources, "bos_token_id").value_or(json(nullptr));
  json pad = token_id(id_sources, "pad_token_id").value_or(eos.is_array() && !eos.empty() ? eos[0] : eos);
  if (eos.is_null()) bad_input("{}: no eos_token_id in generation_config.json or config.json", src.string());
  ojson genai = {{"model",
                  {{"bos_token_id", bos},
                   {"context_length", context},
                   {"decoder",
                    {{"session_options", {{"log_id", "onnxruntime-genai"}, {"provider_options", ojson::array()}}},
                     {"filename", "model.onnx"},
                     {"head_size", c.head_dim},
                     {"hidden_size", c.hidden},
                     {"inputs",
                      {{"input_ids", "input_ids"},
                       {"attention_mask", "attention_mask"},
                       {"position_ids", "position_ids"},
                       {"past_key_names", "past_key_values.%d.key"},
                       {"past_value_names", "past_key_values.%d.value"}}},
                     {"outputs",
                      {{"logits", "logits"},
                       {"present_key_names", "present.%d.key"},
                       {"present_value_names", "present.%d.value"}}},
                     {"num_attention_heads", c.heads},
                     {"num_hidden_layers", c.layers},
                     {"num_key_value_heads", c.kv_heads}}},
                   {"eos_token_id", eos},
                   {"pad_token_id", pad},
                   {"type", c.model_type},
                   {"vocab_size", c.vocab}}},
                 {"search",
                  {{"diversity_penalty", 0.0},
                   {"do_sample", gen.value("do_sample", false)},
                   {"early_stopping", true},
                   {"length_penalty", 1.0},
                   {"max_length", context},
                   {"min_length", 0},
                   {"no_repeat_ngram_size", 0},
                   {"num_beams", 1},
                   {"num_return_sequences", 1},
                   {"past_present_share_buffer", false},
                   {"repetition_penalty", gen.value("repetition_penalty", 1.0)},
                   {"temperature", gen.value("temperature", 1.0)},
                   {"top_k", gen.value("top_k", 50)},  // transformers' and GenAI's builder's default
                   {"top_p", gen.value("top_p", 1.0)}}}};
  auto write = [&](const std::string& name, const std::string& text) {
    formats::AtomicFile f(ctx.scratch / name);
    f.write(text);
    f.commit();
  };
  if (o.flavor != "plain") {
    write("genai_config.json", genai.dump(4) + "\n");
    files.emplace_back("genai_config.json", "genai-config");
  }
  // The tokenizer as transformers saves it, and the generation defaults.
  // config.json too: transformers.js (and Optimum) load the folder with it.
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                           "generation_config.json", "config.json"}) {
    if (!formats::path_exists(src / name)) continue;
    write(name, formats::read_text_file(src / name));
    const std::string n(name);
    files.emplace_back(name, n == "generation_config.json" ? "generation-config"
                             : n == "config.json"          ? "config"
                                                           : "tokenizer");
  }
  if (o.flavor == "foundry-local") {
    const std::string name = o.name.empty() ? fs::absolute(src).lexically_normal().filename().string() : o.name;
    ojson inference = {{"Name", name}};
    if (formats::path_exists(src / "tokenizer_config.json") || formats::path_exists(src / "chat_template.jinja"))
      inference["PromptTemplate"] = prompt_template(tok::ChatTemplate::load(src));
    write("inference_model.json", inference.dump(4) + "\n");
    files.emplace_back("inference_model.json", "foundry-local");
  }
  json listed = json::array();
  uint64_t total = 0;
  for (const auto& [name, role] : files) {
    const uint64_t bytes = fs::file_size(ctx.scratch / name);
    total += bytes;
    const bool data = role == "external-data" && !saved.data_sha256.empty();
    listed.push_back({{"path", name},
                      {"bytes", bytes},
                      {"sha256", data ? saved.data_sha256 : formats::sha256_file(ctx.scratch / name)},
                      {"role", role}});
  }
  json manifest = {{"format", "slmops-package"},
                   {"version", 1},
                   {"flavor", o.flavor},
                   {"slmops_version", SLMOPS_VERSION},
                   {"model", "model.onnx"},
                   {"architecture", c.architecture},
                   {"files", listed}};
  write("manifest.json", manifest.dump(2) + "\n");
  ctx.report = {{"flavor", o.flavor}, {"folder_files", files.size() + 1}, {"bytes", total}};
  a.kind = ArtifactKind::Package;
  a.path = ctx.scratch;
  a.model.reset();
}

}  // namespace

PassInfo package_genai_step_info() {
  PassInfo p;
  p.name = "package-genai";
  p.summary =
      "write a decoder built from a checkpoint as an ONNX Runtime GenAI (or Foundry Local) folder "
      "(onnx model -> package folder)";
  p.options = GenaiOptions::table().specs();
  p.takes = ArtifactKind::OnnxModel;
  p.returns = ArtifactKind::Package;
  p.run_artifact = package_genai;
  return p;
}

}  // namespace slmops::passes
