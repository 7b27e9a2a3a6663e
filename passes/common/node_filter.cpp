#include "passes/common/node_filter.h"

#include <algorithm>

#include "ir/edit.h"

namespace slmops::passes {

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative wildcard match with backtracking to the last '*'.
  size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

NodeFilter::NodeFilter(const NodeSelection& s, std::vector<std::string> default_op_types)
    : op_types_(s.op_types.empty() ? std::move(default_op_types) : s.op_types),
      exclude_nodes_(s.exclude_nodes),
      exclude_op_types_(s.exclude_op_types) {}

bool NodeFilter::allows(const ir::Node& n) const {
  if (std::find(op_types_.begin(), op_types_.end(), n.op_type) == op_types_.end()) return false;
  if (std::find(exclude_op_types_.begin(), exclude_op_types_.end(), n.op_type) != exclude_op_types_.end())
    return false;
  for (auto& pat : exclude_nodes_)
    if (glob_match(pat, n.name)) return false;
  return true;
}

std::vector<std::string> NodeFilter::unmatched(const ir::Graph& g) const {
  std::vector<std::string> names, out;
  ir::walk_graphs(g, [&](const ir::Graph& sub) {
    for (auto& n : sub.nodes()) names.push_back(n->name);
  });
  for (auto& pat : exclude_nodes_) {
    bool hit = false;
    for (auto& n : names) hit = hit || glob_match(pat, n);
    if (!hit) out.push_back(pat);
  }
  return out;
}

}  // namespace slmops::passes
