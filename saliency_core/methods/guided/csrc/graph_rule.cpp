// Guided Backprop's rule put on a recorded autograd graph, so that the backward pass calls no
// Python. The autograd engine runs ReLU and Hardtanh nodes natively; what the guided rule adds
// (rectifying the gradient that arrives at each of them) is a C++ pre-hook on the node, which
// the engine runs before the node's own backward applies the forward gate. A Python hook or
// autograd.Function would instead take the GIL at every activation of every backward pass.
// Built on first use by saliency_core/graph_rule.py; see there for when it is used.

#include <ATen/SequenceNumber.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/library.h>

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace {

using torch::autograd::Node;
using torch::autograd::variable_list;

// clamp(min=0), the very operator the Python rules apply, so the maps agree bit for bit.
struct RectifyIncoming : torch::autograd::FunctionPreHook {
  variable_list operator()(const variable_list& grads) override {
    variable_list out = grads;
    if (!out.empty() && out[0].defined()) {
      out[0] = at::clamp(out[0], at::Scalar(0), std::nullopt);
    }
    return out;
  }
};

// relu, relu_, F.relu and nn.ReLU record ReluBackward0 (gate: output > 0); hardtanh, relu6,
// nn.ReLU6 and nn.Hardtanh record HardtanhBackward0 (gate: lo < input < hi, strictly), the
// gates of relu_rules.py. clamp records ClampBackward1, whose gate includes the bounds: it
// is left alone, and a model using it keeps the operator-level rule (the count differs).
bool is_rectifier(const Node& node) {
  const std::string name = node.name();
  return name == "ReluBackward0" || name == "HardtanhBackward0";
}

// The number this thread's next autograd node gets. Nodes are numbered per thread, so the
// nodes of a pass run on this thread are those of this thread numbered from here on. Only
// they are hooked: a node kept from an earlier call (a tensor a model caches with its graph)
// is not this pass's activation, and hooking it on every call would pile up hooks on it.
int64_t pass_start() {
  return static_cast<int64_t>(at::sequence_number::peek());
}

bool made_since(const Node& node, int64_t since) {
  return node.thread_id() == at::RecordFunction::currentThreadId() &&
      node.sequence_nr() >= static_cast<uint64_t>(since);
}

// Calls visit(node) on every node reachable from root without passing through stop.
template <typename Visit>
void walk(const at::Tensor& root, const Node* stop, Visit visit) {
  Node* start = root.grad_fn().get();
  if (start == nullptr || start == stop) {
    return;
  }
  std::vector<Node*> stack{start};
  std::unordered_set<Node*> seen{start};
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    visit(*node);
    for (const auto& edge : node->next_edges()) {
      Node* next = edge.function.get();
      if (next != nullptr && next != stop && seen.insert(next).second) {
        stack.push_back(next);
      }
    }
  }
}

// Every rectifier of this pass reachable from root gets the hook; returns how many.
int64_t rectify_graph(const at::Tensor& root, int64_t since) {
  int64_t rectified = 0;
  walk(root, nullptr, [&](Node& node) {
    if (is_rectifier(node) && made_since(node, since)) {
      node.add_pre_hook(std::make_unique<RectifyIncoming>());
      ++rectified;
    }
  });
  return rectified;
}

// Rectifiers between root and the node that made `stop`, not counting that node: where there
// are none, the gradient a guided pass carries to `stop` is the plain one (-1: stop has no
// node, so this cannot be told).
int64_t rectifiers_above(const at::Tensor& root, const at::Tensor& stop, int64_t since) {
  const Node* stop_node = stop.grad_fn().get();
  if (stop_node == nullptr) {
    return -1;
  }
  int64_t found = 0;
  walk(root, stop_node, [&](Node& node) {
    found += is_rectifier(node) && made_since(node, since) ? 1 : 0;
  });
  return found;
}

}  // namespace

TORCH_LIBRARY(saliency_graph_rule, m) {
  m.def("pass_start() -> int", &pass_start);
  m.def("rectify_graph(Tensor root, int since) -> int", &rectify_graph);
  m.def("rectifiers_above(Tensor root, Tensor stop, int since) -> int", &rectifiers_above);
}
