// slmops convert MODEL -o OUT: graph clean-up and storage layout (external data). The same
// machinery as a one-step recipe {"pass": "cleanup"}.
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
    std::string to, opset;
    bool optimize = false;
    std::vector<std::string> input_shape;
    std::string target = "onnx";
  };
  static Args a;
  auto* cmd = app.add_subcommand("convert", "clean up a model and choose how its weights are stored");
  cmd->add_option("model", a.model, "input .onnx model")->required();
  cmd->add_option("-o,--output", a.output, "output .onnx path")->required();
  cmd->add_flag("--no-cleanup", a.no_cleanup, "copy the graph as it is (only re-lay the storage)");
  cmd->add_flag("--json", a.json, "print the report as JSON on stdout");
  cmd->add_option("--to", a.to, "convert element types (fp16, bf16): not built yet")->type_name("TYPE");
  cmd->add_option("--opset", a.opset, "convert to another opset: not built yet")->type_name("N");
  cmd->add_flag(
      "--optimize", a.optimize,
      "after cleanup, run the optimize chain: fold-constants, simplify-shapes, eliminate, fuse (standard ops)");
  cmd->add_option("--input-shape", a.input_shape,
                  "with --optimize: fix a graph input's dims first, NAME=D1,D2,... (repeatable)")
      ->type_name("NAME=DIMS");
  cmd->add_option("--target", a.target,
                  "with --optimize: onnxruntime also fuses into ONNX Runtime's contrib ops (the model then runs only "
                  "there)")
      ->type_name("onnx|onnxruntime");
  add_external_data_flag(cmd, &a.external);
  add_pass_option_flags(cmd, *passes::find_pass("cleanup"), &a.cleanup);
  cmd->callback([] {
    if (!a.to.empty()) bad_input("convert --to is not built yet; nothing was written");
    if (!a.opset.empty()) bad_input("convert --opset is not built yet; nothing was written");
    Recipe r;
    r.input = a.model;
    r.output = a.output;
    r.external_data = a.external;
    if (!a.optimize && !a.input_shape.empty()) bad_input("--input-shape needs --optimize; nothing was written");
    if (!a.optimize && a.target != "onnx") bad_input("--target needs --optimize; nothing was written");
    if (!a.no_cleanup) r.steps.push_back({"cleanup", a.cleanup});
    if (a.optimize) r.steps.push_back({"optimize", {{"input-shape", a.input_shape}, {"target", a.target}}});
    validate_recipe(r);
    auto report = execute(r);
    if (a.json) print_json(report);
    else fmt::print("{}\n", r.output.string());
  });
}

}  // namespace slmops::cli
