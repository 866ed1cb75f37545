// The LinearOperator base (shape checks), composition, mask/Fourier/coil operators, and the autograd bridge.
#include "ambient/mri/linear_operator.hpp"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include "ambient/core/error.hpp"
#include "ambient/mri/fft.hpp"

namespace ambient::mri {
namespace {

void check_input(const torch::Tensor& t, const Shape& expected, const std::string& op, const char* side) {
  AMBIENT_CHECK(t.defined(), op, " ", side, ": expected a tensor, got an undefined one");
  AMBIENT_CHECK(t.scalar_type() == torch::kComplexFloat, op, " ", side, ": expected complex64, got ",
                t.scalar_type());
  AMBIENT_CHECK(t.sizes().vec() == expected, op, " ", side, ": expected shape ", shape_string(expected), ", got ",
                shape_string(t.sizes().vec()));
}

class Composition final : public LinearOperator {
 public:
  Composition(OperatorPtr outer, OperatorPtr inner) : outer_(std::move(outer)), inner_(std::move(inner)) {
    AMBIENT_CHECK(outer_ && inner_, "compose: expected two operators, got a null one");
    AMBIENT_CHECK(inner_->range_shape() == outer_->domain_shape(), "compose ", outer_->name(), " ∘ ",
                  inner_->name(), ": expected the inner range ", shape_string(inner_->range_shape()),
                  " to equal the outer domain, got ", shape_string(outer_->domain_shape()));
  }
  Shape domain_shape() const override { return inner_->domain_shape(); }
  Shape range_shape() const override { return outer_->range_shape(); }
  std::string name() const override { return outer_->name() + " ∘ " + inner_->name(); }

 protected:
  torch::Tensor forward_impl(const torch::Tensor& x) const override { return outer_->forward(inner_->forward(x)); }
  torch::Tensor adjoint_impl(const torch::Tensor& y) const override { return inner_->adjoint(outer_->adjoint(y)); }
  // (AB)^H(AB) = B^H (A^H A) B lets an outer operator with a cheap normal (mask, FFT) use it.
  torch::Tensor normal_impl(const torch::Tensor& x) const override {
    return inner_->adjoint(outer_->normal(inner_->forward(x)));
  }

 private:
  OperatorPtr outer_, inner_;
};

class Normal final : public LinearOperator {
 public:
  explicit Normal(OperatorPtr op) : op_(std::move(op)) {
    AMBIENT_CHECK(op_ != nullptr, "normal: expected an operator, got null");
  }
  Shape domain_shape() const override { return op_->domain_shape(); }
  Shape range_shape() const override { return op_->domain_shape(); }
  std::string name() const override { return "normal of " + op_->name(); }

 protected:
  torch::Tensor forward_impl(const torch::Tensor& x) const override { return op_->normal(x); }
  torch::Tensor adjoint_impl(const torch::Tensor& y) const override { return op_->normal(y); }

 private:
  OperatorPtr op_;
};

class Mask final : public LinearOperator {
 public:
  Mask(torch::Tensor weight, Shape shape, std::string name)
      : shape_(std::move(shape)), name_(std::move(name)) {
    AMBIENT_CHECK(weight.defined(), name_, ": expected a weight tensor, got an undefined one");
    AMBIENT_CHECK(!weight.is_complex(), name_, ": expected a real weight, got ", weight.scalar_type());
    try {
      (void)at::infer_size(weight.sizes(), shape_);
    } catch (const c10::Error&) {
      fail(name_, ": expected a weight broadcastable to ", shape_string(shape_), ", got ",
           shape_string(weight.sizes().vec()));
    }
    weight_ = weight.to(torch::kFloat);
    AMBIENT_CHECK(weight_.ge(0).all().item<bool>(), name_, ": expected non-negative weights, got negative ones");
    squared_ = weight_ * weight_;
  }
  Shape domain_shape() const override { return shape_; }
  Shape range_shape() const override { return shape_; }
  std::string name() const override { return name_; }

 protected:
  torch::Tensor forward_impl(const torch::Tensor& x) const override { return x * weight_.to(x.device()); }
  torch::Tensor adjoint_impl(const torch::Tensor& y) const override { return y * weight_.to(y.device()); }
  torch::Tensor normal_impl(const torch::Tensor& x) const override { return x * squared_.to(x.device()); }

 private:
  Shape shape_;
  std::string name_;
  torch::Tensor weight_, squared_;
};

class Fourier final : public LinearOperator {
 public:
  Fourier(Shape shape, FftBackend backend) : shape_(std::move(shape)), backend_(backend) {
    AMBIENT_CHECK(shape_.size() >= 2, "fourier: expected a shape [..., ny, nx], got ", shape_string(shape_));
  }
  Shape domain_shape() const override { return shape_; }
  Shape range_shape() const override { return shape_; }
  std::string name() const override { return "fourier"; }

 protected:
  torch::Tensor forward_impl(const torch::Tensor& x) const override {
    return backend_ == FftBackend::torch ? fft2c_torch(x) : fft2c(x);
  }
  torch::Tensor adjoint_impl(const torch::Tensor& y) const override {
    return backend_ == FftBackend::torch ? ifft2c_torch(y) : ifft2c(y);
  }
  torch::Tensor normal_impl(const torch::Tensor& x) const override { return x.clone(); }

 private:
  Shape shape_;
  FftBackend backend_;
};

class CoilMaps final : public LinearOperator {
 public:
  explicit CoilMaps(torch::Tensor maps) {
    AMBIENT_CHECK(maps.defined() && maps.dim() == 4, "coil maps: expected [slice, coil, ky, kx], got ",
                  maps.defined() ? shape_string(maps.sizes().vec()) : std::string("undefined"));
    AMBIENT_CHECK(maps.scalar_type() == torch::kComplexFloat, "coil maps: expected complex64, got ",
                  maps.scalar_type());
    maps_ = maps.contiguous();
    conj_ = maps_.conj().resolve_conj();
  }
  Shape domain_shape() const override { return {maps_.size(0), maps_.size(2), maps_.size(3)}; }
  Shape range_shape() const override { return maps_.sizes().vec(); }
  std::string name() const override { return "coil maps"; }

 protected:
  // image: [slice, ky, kx] -> coil images: [slice, coil, ky, kx]
  torch::Tensor forward_impl(const torch::Tensor& x) const override {
    return maps_.to(x.device()) * x.unsqueeze(1);
  }
  torch::Tensor adjoint_impl(const torch::Tensor& y) const override {
    return (conj_.to(y.device()) * y).sum(1);
  }

 private:
  torch::Tensor maps_, conj_;
};

// Autograd node whose backward applies the other side of the operator, so d/dx <g, A x> = A^H g.
struct OperatorBackward final : public torch::autograd::Node {
  OperatorBackward(OperatorPtr op, bool adjoint) : op_(std::move(op)), adjoint_(adjoint) {}
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    const torch::Tensor& g = grads[0];
    if (!g.defined()) return {torch::Tensor()};
    return {adjoint_ ? mri::apply(op_, g) : mri::apply_adjoint(op_, g)};
  }
  std::string name() const override { return adjoint_ ? "OperatorAdjointBackward" : "OperatorBackward"; }

 private:
  OperatorPtr op_;
  bool adjoint_;
};

torch::Tensor apply_with_graph(const OperatorPtr& op, const torch::Tensor& x, bool adjoint) {
  AMBIENT_CHECK(op != nullptr, "apply: expected an operator, got null");
  torch::Tensor out;
  {
    torch::NoGradGuard no_grad;
    out = adjoint ? op->adjoint(x.detach()) : op->forward(x.detach());
  }
  if (torch::GradMode::is_enabled() && x.requires_grad()) {
    auto node = std::shared_ptr<OperatorBackward>(new OperatorBackward(op, adjoint), torch::autograd::deleteNode);
    node->set_next_edges(torch::autograd::collect_next_edges(x));
    torch::autograd::create_gradient_edge(out, node);
  }
  return out;
}

}  // namespace

torch::Tensor LinearOperator::forward(const torch::Tensor& x) const {
  check_input(x, domain_shape(), name(), "forward input");
  return forward_impl(x);
}

torch::Tensor LinearOperator::adjoint(const torch::Tensor& y) const {
  check_input(y, range_shape(), name(), "adjoint input");
  return adjoint_impl(y);
}

torch::Tensor LinearOperator::normal(const torch::Tensor& x) const {
  check_input(x, domain_shape(), name(), "normal input");
  return normal_impl(x);
}

OperatorPtr compose(OperatorPtr outer, OperatorPtr inner) {
  return std::make_shared<Composition>(std::move(outer), std::move(inner));
}

OperatorPtr make_normal(OperatorPtr op) { return std::make_shared<Normal>(std::move(op)); }

OperatorPtr make_mask(torch::Tensor weight, Shape shape, std::string name) {
  return std::make_shared<Mask>(std::move(weight), std::move(shape), std::move(name));
}

OperatorPtr make_fourier(Shape shape, FftBackend backend) {
  return std::make_shared<Fourier>(std::move(shape), backend);
}

OperatorPtr make_coil_maps(torch::Tensor maps) { return std::make_shared<CoilMaps>(std::move(maps)); }

OperatorPtr make_sense(torch::Tensor maps, torch::Tensor mask, FftBackend backend) {
  auto coils = make_coil_maps(std::move(maps));
  const Shape ksp = coils->range_shape();
  return compose(make_mask(std::move(mask), ksp, "k-space mask"), compose(make_fourier(ksp, backend), coils));
}

torch::Tensor apply(const OperatorPtr& op, const torch::Tensor& x) { return apply_with_graph(op, x, false); }

torch::Tensor apply_adjoint(const OperatorPtr& op, const torch::Tensor& y) { return apply_with_graph(op, y, true); }

double inner_product_real(const torch::Tensor& a, const torch::Tensor& b) {
  const auto ad = a.to(torch::kComplexDouble), bd = b.to(torch::kComplexDouble);
  return torch::real((ad.conj() * bd).sum()).item<double>();
}

}  // namespace ambient::mri
