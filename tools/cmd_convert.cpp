// slmops convert MODEL -o OUT: graph clean-up, optimization, 16-bit floats and storage layout
// (external data). The same machinery as a recipe of the steps cleanup, optimize, to-float16.
// slmops convert HF_DIR -o OUT_DIR [--precision fp32|fp16|int4] [--context-length N]: a Hugging
// Face checkpoint folder built into an ONNX decoder with KV cache (the steps from-hf, then
// to-float16 or quantize, then package).
#include "ir/error.h"
#include "passes/registry.h"
#include "tools/cli.h"
#include "tools/recipe.h"

namespace slmops::cli {

void register_convert(CLI::App& app) {
  struct Args {
    std::string model, output;
    bool no_cleanup = false;
    bool json = false;
    formats::ExternalData external = formats::ExternalData::Auto;
    nlohmann::json cleanup = nlohmann::json::object();
    std::string to;
    int64_t opset = 0;
    int64_t ir_version = 0;
    bool optimize = false;
    std::vector<std::string> input_shape;
    std::string target = "onnx";
    nlohmann::json f16 = nlohmann::json::object();  // to-float16's options given as flags
    nlohmann::json mixed = nlohmann::json::object();  // mixed-precision's own options given as flags
    nlohmann::json quant = nlohmann::json::object();  // checkpoint --precision int4: quantize's options
    std::string precision;
    int64_t context_length = 0;
    std::string package, name;
  };
  static Args a;
  auto* cmd = app.add_subcommand("convert", "clean up a model and choose how its weights are stored");
  cmd->add_option("model", a.model,
                  "input .onnx model, or a Hugging Face checkpoint folder (config.json, *.safetensors)")
      ->required();
  cmd->add_option("-o,--output", a.output, "output .onnx path (a folder for a checkpoint)")->required();
  cmd->add_option("--precision", a.precision, "checkpoint: weights of the built model (default fp32)")
      ->type_name("fp32|fp16|int4");
  cmd->add_option("--context-length", a.context_length,
                  "checkpoint: positions the rotary tables cover (default max_position_embeddings, at most 131072)")
      ->type_name("N");
  cmd->add_option("--package", a.package, "checkpoint: a deployment folder for ONNX Runtime GenAI or Foundry Local")
      ->type_name("genai|foundry-local");
  cmd->add_option("--name", a.name, "checkpoint: the model's name in Foundry Local's inference_model.json");
  cmd->add_flag("--no-cleanup", a.no_cleanup, "copy the graph as it is (only re-lay the storage)");
  cmd->add_flag("--json", a.json, "print the report as JSON on stdout");
  cmd->add_option("--to", a.to,
                  "store and compute floats in fp16 or bf16 (the to-float16 pass: ONNX Runtime's float16 converter), "
                  "or mixed: fp16 except the nodes that --calib-data shows overflowing, or that miss "
                  "--max-degradation (the mixed-precision pass: ORT's auto_mixed_precision)")
      ->type_name("fp16|bf16|mixed");
  cmd->add_option("--opset", a.opset,
                  "convert to default-domain opset N (7 to 17), up or down, with libonnx's version converter")
      ->type_name("N");
  cmd->add_option("--ir-version", a.ir_version,
                  "write this IR version (4 to 11), for runtimes that refuse newer files; refused when the model's "
                  "opset or types need a newer one")
      ->type_name("N");
  cmd->add_flag(
      "--optimize", a.optimize,
      "after cleanup, run the optimize chain: fold-constants, simplify-shapes, eliminate, fuse (standard ops)");
  cmd->add_option("--input-shape", a.input_shape,
                  "with --optimize: fix a graph input's dims first, NAME=D1,D2,... (repeatable)")
      ->type_name("NAME=DIMS");
  cmd->add_option("--target", a.target,
                  "with --optimize: onnxruntime also fuses into ONNX Runtime's contrib ops (the model then runs only "
                  "there and in slmops); for a checkpoint folder: standard (default) writes attention in standard "
                  "ops, onnxruntime as ONNX Runtime GenAI does (RotaryEmbedding, GroupQueryAttention, fused norms)")
      ->type_name("onnx|standard|onnxruntime");
  add_external_data_flag(cmd, &a.external);
  add_pass_option_flags(cmd, *passes::find_pass("cleanup"), &a.cleanup);
  add_pass_option_flags(cmd, *passes::find_pass("to-float16"), &a.f16,
                        {"keep-io-types", "op-block-list", "node-block-list"});
  add_pass_option_flags(
      cmd, *passes::find_pass("mixed-precision"), &a.mixed,
      {"calib-data", "calib-samples", "calib-batch-size", "max-degradation", "eval-data", "max-fallback-steps"});
  add_pass_option_flags(cmd, *passes::find_pass("quantize"), &a.quant,
                        {"algorithm", "block-size", "symmetric", "accuracy-level"});
  cmd->callback([] {
    std::error_code ec;
    if (std::filesystem::is_directory(a.model, ec)) {
      // A checkpoint folder: build the decoder, then its precision, then the output folder.
      if (!a.to.empty() || a.opset != 0 || a.ir_version != 0 || a.optimize || a.no_cleanup)
        bad_input(
            "{}: a checkpoint folder takes --precision, --context-length and --package (not --to, --opset, "
            "--ir-version, --optimize or --no-cleanup); nothing was written",
            a.model);
      if (!a.precision.empty() && a.precision != "fp32" && a.precision != "fp16" && a.precision != "int4")
        bad_input("--precision {}: expected fp32, fp16 or int4; nothing was written", a.precision);
      if (a.target != "onnx" && a.target != "standard" && a.target != "onnxruntime")
        bad_input("--target {}: expected standard or onnxruntime; nothing was written", a.target);
      if (!a.package.empty() && a.package != "genai" && a.package != "foundry-local")
        bad_input("--package {}: expected genai or foundry-local; nothing was written", a.package);
      if (!a.quant.empty() && a.precision != "int4")
        bad_input("--{} is for --precision int4; nothing was written", a.quant.begin().key());
      const std::string algorithm = a.quant.value("algorithm", "rtn");
      nlohmann::json calib = nlohmann::json::object();  // quantize's calibration options, for gptq
      for (const auto& [key, value] : a.mixed.items()) {
        if (key.rfind("calib-", 0) != 0 || a.precision != "int4" || algorithm != "gptq")
          bad_input(
              "--{}: a checkpoint folder takes calibration data only with --precision int4 --algorithm gptq; "
              "nothing was written",
              key);
        calib[key] = value;
      }
      Recipe r;
      r.input = a.model;
      r.output = a.output;
      r.external_data = a.external;
      const bool ort = a.target == "onnxruntime";
      nlohmann::json from_hf = {{"context-length", a.context_length}, {"target", ort ? "onnxruntime" : "standard"}};
      // int4 by round-to-nearest is quantized as the weights are read (never a float32 model in
      // memory); GPTQ and HQQ run the quantize pass over the float model.
      if (a.precision == "int4" && algorithm == "rtn") {
        from_hf["weights"] = "int4";
        for (const auto& [key, value] : a.quant.items())
          if (key != "algorithm") from_hf[key] = value;
      }
      r.steps.push_back({"from-hf", from_hf});
      if (a.precision == "fp16") r.steps.push_back({"to-float16", {{"dtype", "float16"}, {"keep-io-types", true}}});
      if (a.precision == "int4" && algorithm != "rtn") {
        nlohmann::json q = a.quant;
        q["mode"] = "int4-weight";
        q.update(calib);
        r.steps.push_back({"quantize", q});
      }
      // onnxruntime: the builder writes RotaryEmbedding and GroupQueryAttention; the optimize
      // pass adds ORT's contrib fusions (SimplifiedLayerNormalization,
      // SkipSimplifiedLayerNormalization, QuickGelu for SiLU, FusedMatMul) after the precision
      // step, whose float16 converter would otherwise meet fused norms.
      if (ort) r.steps.push_back({"optimize", {{"target", "onnxruntime"}}});
      // Without --package: the model beside the checkpoint's config and tokenizer files.
      r.steps.push_back({"package-genai",
                         {{"flavor", a.package.empty() ? "plain" : a.package},
                          {"name", a.name},
                          {"external-data", a.external == formats::ExternalData::Never ? "never" : "always"}}});
      validate_recipe(r);
      auto report = execute(r);
      if (a.json)
        print_json(report);
      else
        fmt::print("{}\n", r.output.string());
      return;
    }
    if (!a.precision.empty() || a.context_length != 0 || !a.package.empty() || !a.quant.empty())
      bad_input(
          "--precision, --context-length, --package, --algorithm, --block-size, --symmetric and --accuracy-level are "
          "for a checkpoint folder; {} is not one (slmops quantize quantizes a model)",
          a.model);
    if (!a.to.empty() && a.to != "fp16" && a.to != "bf16" && a.to != "mixed")
      bad_input("--to {}: expected fp16, bf16 or mixed; nothing was written", a.to);
    if (a.to.empty() && !a.f16.empty())
      bad_input("--{} needs --to fp16, bf16 or mixed; nothing was written", a.f16.begin().key());
    if (a.to != "mixed" && !a.mixed.empty())
      bad_input("--{} needs --to mixed; nothing was written", a.mixed.begin().key());
    if (a.opset != 0 && (a.opset < 7 || a.opset > 17))
      bad_input(
          "--opset {}: expected 7 to 17 (the opsets Debian's libonnx 1.12 version converter knows); nothing "
          "was written",
          a.opset);
    Recipe r;
    r.input = a.model;
    r.output = a.output;
    r.external_data = a.external;
    if (!a.optimize && !a.input_shape.empty()) bad_input("--input-shape needs --optimize; nothing was written");
    if (!a.optimize && a.target != "onnx") bad_input("--target needs --optimize; nothing was written");
    // The opset first: it fails on ops without an adapter, before any other work is done or logged.
    if (a.opset != 0) r.steps.push_back({"opset", {{"version", a.opset}}});
    if (!a.no_cleanup) r.steps.push_back({"cleanup", a.cleanup});
    if (a.optimize) r.steps.push_back({"optimize", {{"input-shape", a.input_shape}, {"target", a.target}}});
    if (a.to == "mixed") {
      nlohmann::json o = a.f16;
      o.update(a.mixed);
      r.steps.push_back({"mixed-precision", o});
    } else if (!a.to.empty()) {
      nlohmann::json o = a.f16;
      o["dtype"] = a.to == "fp16" ? "float16" : "bfloat16";
      r.steps.push_back({"to-float16", o});
    }
    if (a.ir_version != 0 && (a.ir_version < 4 || a.ir_version > 11))
      bad_input(
          "--ir-version {}: expected 4 to 11 (IR 3 lists every initializer as a graph input); nothing was "
          "written",
          a.ir_version);
    if (a.ir_version != 0) r.steps.push_back({"ir-version", {{"version", a.ir_version}}});
    validate_recipe(r);
    auto report = execute(r);
    if (a.json)
      print_json(report);
    else
      fmt::print("{}\n", r.output.string());
  });
}

}  // namespace slmops::cli
