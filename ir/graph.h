// The in-memory graph: Model > Graph > Node / Value with producer and consumer lists.
//
// Fields the IR models are plain members. Everything else an ONNX file carries (doc
// strings, metadata, functions, training info, fields newer than our schema) is kept per
// object as `residual`: the serialized protobuf message minus the parts modeled here as
// objects. formats/ merges it back when saving, so an untouched model round-trips exactly.
#pragma once
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/tensor.h"

namespace slmops::ir {

class Graph;
struct Node;

struct Dim {
  int64_t value = -1;  // >= 0 when known
  std::string param;   // symbolic name ("batch"), when value is unknown
  bool known() const { return value >= 0; }
  bool operator==(const Dim&) const = default;
};

// The tensor type of a value as declared in the file (input/output/value_info).
struct TensorType {
  bool is_tensor = false;  // false: not declared, or a non-tensor type (sequence, map, ...)
  // For non-tensor types: "sequence", "optional", "optional(sequence)", "map", ... and then
  // elem_code/dims describe the innermost tensor type when there is one.
  std::string container;
  int32_t elem_code = 0;   // ONNX elem_type code
  bool has_shape = false;
  std::vector<Dim> dims;
  DType elem() const { return is_known_dtype(elem_code) ? static_cast<DType>(elem_code) : DType::Undefined; }
  bool operator==(const TensorType&) const = default;

  // Builders: a tensor type with known dims, or with Dim entries (symbolic names allowed).
  static TensorType of(DType dt, const std::vector<int64_t>& dims);
  static TensorType of_dims(DType dt, std::vector<Dim> dims);
};

struct Value {
  enum class Kind : uint8_t { Input, Initializer, NodeOutput, Captured, Undefined };

  std::string name;
  Kind kind = Kind::Undefined;
  Graph* graph = nullptr;
  Node* producer = nullptr;        // for NodeOutput
  std::vector<Node*> consumers;    // one entry per use; a node that uses it twice is listed twice
  std::shared_ptr<Tensor> initializer;  // for Initializer (and Input with a default)
  Value* outer = nullptr;          // for Captured: the outer-scope value a subgraph reads
  TensorType type;                 // declared type, if any
  // The type shape inference found (formats::infer_shapes), declared types included; kept
  // apart from `type` so that saving writes only what the file declared.
  TensorType inferred;

  // The name written to the file (a captured value takes the outer value's current name).
  const std::string& file_name() const { return outer ? outer->file_name() : name; }
  bool is_graph_output() const;
};

enum class AttrType : int32_t {
  Undefined = 0, Float = 1, Int = 2, String = 3, Tensor = 4, Graph = 5, Floats = 6, Ints = 7,
  Strings = 8, Tensors = 9, Graphs = 10, SparseTensor = 11, SparseTensors = 12, TypeProto = 13,
  TypeProtos = 14,
};

struct Attribute {
  std::string name;
  AttrType type = AttrType::Undefined;
  float f = 0;
  int64_t i = 0;
  std::string s;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::shared_ptr<Tensor> t;
  std::vector<Tensor> tensors;
  std::unique_ptr<Graph> g;
  std::vector<std::unique_ptr<Graph>> graphs;
  std::string residual;

  static Attribute make_int(std::string name, int64_t v);
  static Attribute make_float(std::string name, float v);
  static Attribute make_string(std::string name, std::string v);
  static Attribute make_ints(std::string name, std::vector<int64_t> v);
  static Attribute make_floats(std::string name, std::vector<float> v);
  static Attribute make_tensor(std::string name, Tensor v);
};

// A node's attribute list (Attribute is move-only, so no initializer list).
template <typename... A>
std::vector<Attribute> attribute_list(A&&... a) {
  std::vector<Attribute> v;
  (v.push_back(std::forward<A>(a)), ...);
  return v;
}

struct Node {
  std::string name, op_type, domain;
  std::vector<Value*> inputs;    // nullptr: an omitted optional input
  std::vector<Value*> outputs;   // nullptr: an omitted optional output
  std::vector<Value*> implicit_inputs;  // outer values read by this node's subgraphs
  std::vector<Attribute> attributes;
  std::string residual;
  Graph* graph = nullptr;

  const Attribute* attr(std::string_view name) const;
  Attribute* attr(std::string_view name);
  int64_t attr_int(std::string_view name, int64_t fallback) const;
  float attr_float(std::string_view name, float fallback) const;
  std::string attr_string(std::string_view name, std::string fallback) const;
  std::vector<int64_t> attr_ints(std::string_view name) const;
  bool has_subgraphs() const;
  void set_input(size_t i, Value* v);
};

// An entry of graph.input / graph.output / graph.value_info, as in the file.
struct ValueInfo {
  Value* value = nullptr;
  std::string proto;    // serialized ValueInfoProto as loaded; empty when created in memory
  TensorType loaded;    // the type `proto` declares, to notice when a pass changed it
};

class Graph {
 public:
  explicit Graph(Graph* parent = nullptr, Node* owner = nullptr) : parent_(parent), owner_(owner) {}
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  std::string name;
  std::string residual;
  std::vector<ValueInfo> inputs, outputs, value_info;
  std::vector<Value*> initializers;  // in file order

  Graph* parent() const { return parent_; }
  Node* owner() const { return owner_; }

  // Nodes in stored order (the file's, unless a pass reordered them).
  const std::list<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  size_t node_count() const { return nodes_.size(); }

  // Building.
  Value* new_value(std::string name, Value::Kind kind);
  Value* add_input(std::string name, TensorType type);
  Value* add_initializer(Tensor t);
  void add_output(Value* v);
  // Adds a node at the end. Creates one output value per name (empty name: omitted output).
  Node* add_node(std::string op_type, std::vector<Value*> inputs, std::vector<std::string> output_names,
                 std::vector<Attribute> attributes = {}, std::string name = {}, std::string domain = {});
  Value* find_value(std::string_view name) const;  // this scope only; nullptr when absent
  std::string unique_name(std::string_view prefix);
  // Gives `v` (of this graph) a new name, unused in this scope (a converted graph output keeps
  // its name while the value that fed it is renamed).
  void rename_value(Value* v, std::string name);

  // Editing.
  void remove_node(Node* n);             // drops its input uses; its outputs lose their producer
  void remove_initializer(Value* v);     // value must have no consumers
  void replace_all_uses(Value* from, Value* to);  // nodes, implicit inputs and graph outputs
  void compact_values();                 // forget values nothing refers to any more
  void set_node_order(const std::vector<Node*>& order);

  // Nodes in an order where every producer comes before its consumers (stable: file order
  // wins ties). Throws Error naming a node on a cycle.
  std::vector<Node*> topological_order() const;

  // Every graph nested in this one's node attributes, depth first.
  void for_each_subgraph(const std::function<void(Graph&)>& fn);

  // A deep copy (nodes, values, subgraphs); initializer tensors are copied as Tensor objects
  // whose Buffers share the same immutable bytes, so weights are not duplicated. `map`
  // receives old -> new for every value (outer values of captured ones must be in it).
  std::unique_ptr<Graph> clone(Graph* parent, Node* owner, std::unordered_map<const Value*, Value*>& map) const;

 private:
  Graph* parent_;
  Node* owner_;
  std::list<std::unique_ptr<Node>> nodes_;
  std::list<std::unique_ptr<Value>> values_;
  std::unordered_map<std::string, Value*> by_name_;
};

struct OpsetImport {
  std::string domain;
  int64_t version = 0;
  bool operator==(const OpsetImport&) const = default;
};

struct Model {
  int64_t ir_version = 0;
  std::vector<OpsetImport> opsets;
  std::string producer_name, producer_version, domain, doc_string;
  int64_t model_version = 0;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::unique_ptr<Graph> graph;
  std::string residual;

  std::string path;  // the file it was loaded from, for messages; empty if built in memory
  std::vector<std::string> source_files;  // every file the model was read from (model + external data)
  // Whether Value::inferred is filled (formats::infer_shapes). Loading leaves it false:
  // inference is done on demand (formats::ensure_shapes), as it costs more than 10% of
  // loading a 1 GB model whose weights are memory-mapped.
  bool shapes_inferred = false;
  int64_t opset(std::string_view domain) const;  // 0 when not imported ("" and "ai.onnx" alike)
  Model clone() const;  // deep copy of the graph; weight bytes shared (see Graph::clone)
};

// Copies every initializer (and tensor attribute) whose data is not aligned to its element
// size (see Tensor::aligned), in every graph. Call before reading weights as typed values
// (the executor, quantization); model IO alone does not need it and keeps the mapping.
void align_initializers(Model& m);

}  // namespace slmops::ir
