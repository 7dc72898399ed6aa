"""Autograd formulas and vmap rules of the torchconv ops.

Every derivative is written with the ops themselves, and the backward ops have formulas of their
own, so derivatives of any order work. Let B(x, w, g) = <g, conv(x, w)> (bilinear, no complex
conjugation). Then

    conv2d(x, w)                 = dB/dg
    conv2d_grad_input(g, w)      = dB/dx
    conv2d_grad_weight(g, x)     = dB/dw

and the vector-Jacobian product of any of them with respect to one operand is another of the three
with the *other primal operand conjugated* (PyTorch's convention for holomorphic functions); for
real dtypes ``.conj()`` is free.
"""

import torch
import torch.autograd.forward_ad as forward_ad

from ._extension import _C
from ._meta import plan_forward

ops = torch.ops.torchconv


def expand_pair(values):
    """F.conv2d's broadcast of a one-element stride/dilation to both spatial dims."""
    values = list(values)
    return values * 2 if len(values) == 1 else values


def spatial_dims(t: torch.Tensor):
    return (0, 2, 3) if t.dim() == 4 else (1, 2)


def forward_padding(input_size, output_size, stride, leading_padding):
    """Padding for a forward conv2d that must reproduce a given output size.

    The backward ops only know the leading (top, left) padding. Symmetric padding reproduces
    the output size, except for 'same' with an even kernel, whose trailing padding is one more:
    that case (stride 1, output size == input size) is exactly what padding='same' computes.
    """
    if list(stride) == [1, 1] and list(input_size[-2:]) == list(output_size[-2:]):
        return "same"
    return list(leading_padding)


def conv2d_op(padding):
    return ops.conv2d.padding if isinstance(padding, str) else ops.conv2d.default


class _Ops:
    """The three ops as the formulas call them: raw (for the registered autograd formulas that
    torch.compile uses) or through the eager autograd.Functions below (see there why)."""

    def __init__(self, conv2d, grad_input, grad_weight):
        self.conv2d, self.grad_input, self.grad_weight = conv2d, grad_input, grad_weight


def _raw_conv2d(input, weight, bias, stride, padding, dilation, groups):
    return conv2d_op(padding)(input, weight, bias, stride, padding, dilation, groups)


RAW = _Ops(_raw_conv2d, ops.conv2d_grad_input.default, ops.conv2d_grad_weight.default)


def _below_autograd(op):
    def call(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args)
    return call


# The ops below the autograd key, for eager calls that record nothing: their Python autograd
# kernel (and an autograd.Function around them) cost 7-30 us per call. Autocast and dispatch
# modes sit above autograd and still apply.
BELOW = _Ops(_below_autograd(_raw_conv2d), _below_autograd(ops.conv2d_grad_input.default),
             _below_autograd(ops.conv2d_grad_weight.default))


def _plain(impl):
    """impl, or BELOW where nothing is recorded or transformed: eager, grad mode off (a
    backward without create_graph), no forward-mode dual level, no functorch transform."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or needs_eager_function():
        return impl
    return BELOW


# --------------------------------------------------------------------------------------------
# conv2d (both overloads)

def setup_conv2d(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups = inputs
    _, _, leading = plan_forward(input, weight, bias, stride, padding, dilation, groups)
    ctx.params = (expand_pair(stride), list(leading), expand_pair(dilation), groups)
    ctx.has_bias = bias is not None
    ctx.save_for_backward(input, weight)


def conv2d_operand_grads(grad, input, weight, params, has_bias, needs, impl):
    """The gradients of conv2d's input, weight and bias (None where `needs` says not needed)."""
    impl = _plain(impl)
    grad_input = grad_weight = grad_bias = None
    if needs[0]:
        grad_input = impl.grad_input(grad, weight.conj(), list(input.shape), *params)
    if needs[1]:
        grad_weight = impl.grad_weight(grad, input.conj(), list(weight.shape), *params)
    if has_bias and needs[2]:
        if input.shape[-3] == 0:  # zero input channels: F.conv2d's output has no channels
            grad_bias = grad.new_zeros(weight.shape[0])
        else:
            grad_bias = grad.sum(dim=spatial_dims(grad))
    return grad_input, grad_weight, grad_bias


def conv2d_backward(ctx, grad, impl=RAW):
    input, weight = ctx.saved_tensors
    grads = conv2d_operand_grads(grad, input, weight, ctx.params, ctx.has_bias,
                                 ctx.needs_input_grad, impl)
    return grads + (None, None, None, None)


# --------------------------------------------------------------------------------------------
# conv2d_grad_input(g, w) = dB/dx

def setup_grad_input(ctx, inputs, output):
    grad_output, weight, input_size, stride, padding, dilation, groups = inputs
    ctx.params = (list(input_size), list(stride), list(padding), list(dilation), groups)
    ctx.save_for_backward(grad_output, weight)


def grad_input_backward(ctx, v, impl=RAW):
    impl = _plain(impl)
    grad_output, weight = ctx.saved_tensors
    input_size, stride, padding, dilation, groups = ctx.params
    d_grad_output = d_weight = None
    if ctx.needs_input_grad[0]:
        fwd_padding = forward_padding(input_size, grad_output.shape, stride, padding)
        d_grad_output = impl.conv2d(v, weight.conj(), None, stride, fwd_padding, dilation, groups)
    if ctx.needs_input_grad[1]:
        d_weight = impl.grad_weight(grad_output.conj(), v, list(weight.shape), stride, padding,
                                    dilation, groups)
    return d_grad_output, d_weight, None, None, None, None, None


# --------------------------------------------------------------------------------------------
# conv2d_grad_weight(g, x) = dB/dw

def setup_grad_weight(ctx, inputs, output):
    grad_output, input, weight_size, stride, padding, dilation, groups = inputs
    ctx.params = (list(stride), list(padding), list(dilation), groups)
    ctx.save_for_backward(grad_output, input)


def grad_weight_backward(ctx, v, impl=RAW):
    impl = _plain(impl)
    grad_output, input = ctx.saved_tensors
    stride, padding, dilation, groups = ctx.params
    d_grad_output = d_input = None
    if ctx.needs_input_grad[0]:
        fwd_padding = forward_padding(input.shape, grad_output.shape, stride, padding)
        d_grad_output = impl.conv2d(input.conj(), v, None, stride, fwd_padding, dilation, groups)
    if ctx.needs_input_grad[1]:
        d_input = impl.grad_input(grad_output.conj(), v, list(input.shape), stride, padding, dilation,
                                  groups)
    return d_grad_output, d_input, None, None, None, None, None


for _overload in (ops.conv2d.default, ops.conv2d.padding):
    torch.library.register_autograd(_overload, conv2d_backward, setup_context=setup_conv2d)
torch.library.register_autograd(ops.conv2d_grad_input.default, grad_input_backward,
                                setup_context=setup_grad_input)
torch.library.register_autograd(ops.conv2d_grad_weight.default, grad_weight_backward,
                                setup_context=setup_grad_weight)


# --------------------------------------------------------------------------------------------
# Eager mode: the same formulas through autograd.Functions that also define forward-mode AD
# (jvp) and setup_context. torch.library's registered formulas have neither, so without these
# wrappers torch.func.jvp/jacfwd fail and torch.func.grad (which differentiates the backward
# ops again) refuses to run. Every op is bilinear, so each tangent is a sum of two op calls.
# torch.compile graphs call the ops directly (Dynamo does not trace custom jvp methods).

def _bilinear_tangent(op, first, second, d_first, d_second, extra):
    tangent = None
    if d_first is not None:
        tangent = op(d_first, second, *extra)
    if d_second is not None:
        term = op(first, d_second, *extra)
        tangent = term if tangent is None else tangent + term
    return tangent


class Conv2dFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(input, weight, bias, stride, padding, dilation, groups):
        return _raw_conv2d(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        setup_conv2d(ctx, inputs, output)
        ctx.save_for_forward(inputs[0], inputs[1])
        ctx.conv_args = inputs[3:]
        ctx.output_shape = output.shape

    @staticmethod
    def backward(ctx, grad):
        return conv2d_backward(ctx, grad, EAGER)

    @staticmethod
    def jvp(ctx, d_input, d_weight, d_bias, *_):
        input, weight = ctx.saved_tensors
        tangent = _bilinear_tangent(
            lambda x, w, *args: Conv2dFunction.apply(x, w, None, *args),
            input, weight, d_input, d_weight, ctx.conv_args)
        if d_bias is not None:
            term = d_bias[:, None, None].expand(ctx.output_shape)
            tangent = term.clone() if tangent is None else tangent + term
        return tangent


class _OpArgs:
    """Non-tensor arguments of a backward op, passed to its autograd.Function as one opaque
    object: functorch's generated vmap rule for jvp mis-counts list arguments otherwise."""

    def __init__(self, values):
        self.values = tuple(values)


def _backward_op_function(name, op, setup_context, backward_formula):
    """autograd.Function for one of the two backward ops (same structure for both)."""

    def setup(ctx, inputs, output):
        first, second, args = inputs
        setup_context(ctx, (first, second, *args.values), output)
        ctx.save_for_forward(first, second)
        ctx.op_args = args

    def backward(ctx, v):
        return backward_formula(ctx, v, EAGER)[:2] + (None,)

    def jvp(ctx, d_first, d_second, _):
        first, second = ctx.saved_tensors
        return _bilinear_tangent(cls.apply, first, second, d_first, d_second, (ctx.op_args,))

    cls = type(name, (torch.autograd.Function,), {
        "generate_vmap_rule": True,
        "forward": staticmethod(lambda first, second, args: op(first, second, *args.values)),
        "setup_context": staticmethod(setup),
        "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
    })
    return lambda first, second, *args: cls.apply(first, second, _OpArgs(args))


grad_input_function = _backward_op_function(
    "GradInputFunction", ops.conv2d_grad_input.default, setup_grad_input, grad_input_backward)
grad_weight_function = _backward_op_function(
    "GradWeightFunction", ops.conv2d_grad_weight.default, setup_grad_weight,
    grad_weight_backward)


EAGER = _Ops(Conv2dFunction.apply, grad_input_function, grad_weight_function)


# Eager calls (no dual level, no functorch transform): one C++ entry (csrc/recorded_conv2d.cpp)
# that records a C++ graph node when reverse-mode autograd needs one, else runs the op below the
# autograd key. The node runs plain backward passes in C++ and hands the others to the formula
# below, through the eager functions (EAGER). A training step on a tiny input took 144-148 us
# through a Python autograd.Function around the same formula, 113-127 us through the node
# (F.conv2d: 87 us).
def conv2d_eager(input, weight, bias, stride, padding, dilation, groups):
    if isinstance(padding, str):
        return _C.conv2d_eager(input, weight, bias, stride, [], padding, dilation, groups)
    return _C.conv2d_eager(input, weight, bias, stride, padding, "", dilation, groups)


def _recorded_backward(grad, input, weight, stride, padding, dilation, groups, has_bias, needs):
    return conv2d_operand_grads(grad, input, weight, (stride, padding, dilation, groups),
                                has_bias, needs, EAGER)


_C.set_recorded_backward(_recorded_backward)


def needs_eager_function():
    """Whether an eager call must go through the autograd.Functions above (the ops' registered
    formulas have no forward mode): a forward-mode dual level is open (tensors may carry
    tangents) or a functorch transform (vmap, grad, jvp) is active."""
    if torch._C._are_functorch_transforms_active():
        return True
    return getattr(forward_ad, "_current_level", 0) >= 0  # -1: no dual level entered


# --------------------------------------------------------------------------------------------
# vmap: a vmapped batch dimension B is folded into the convolution's batch when only the
# activations are batched, and into its groups (B * groups) when the weights are batched.

def _front(t, bdim):
    return t if t is None or bdim is None else t.movedim(bdim, 0)


def _batched(t, bdim, batch_size):
    """`t` with the vmapped dimension in front (expanded if `t` was not vmapped)."""
    return t.movedim(bdim, 0) if bdim is not None else t.expand(batch_size, *t.shape)


def _logical_batch(t, bdim):
    """Inserts a batch of one after the vmapped dim of an unbatched (3-D logical) tensor."""
    return t.unsqueeze(1 if bdim is not None else 0)


# The dispatcher drops trailing arguments equal to the schema defaults, hence the defaults here.
def conv2d_vmap(info, in_dims, input, weight, bias=None, stride=(1,), padding=(0,),
                dilation=(1,), groups=1):
    B = info.batch_size
    x_bdim, w_bdim, b_bdim = in_dims[:3]
    op = conv2d_op(padding)
    unbatched = input.dim() - (x_bdim is not None) == 3
    if unbatched:
        input = _logical_batch(_front(input, x_bdim), x_bdim)
        x_bdim = None if x_bdim is None else 0
    bias_arg = bias if b_bdim is None else None
    x = _batched(input, x_bdim, B)  # (B, N, C, H, W)
    if w_bdim is None:
        out = op(x.flatten(0, 1), weight, bias_arg, stride, padding, dilation, groups)
        out = out.unflatten(0, (B, x.shape[1]))
    else:
        w = weight.movedim(w_bdim, 0)  # (B, K, C/g, R, S)
        grouped_bias = None if bias_arg is None else bias_arg.repeat(B)
        out = op(x.transpose(0, 1).flatten(1, 2), w.flatten(0, 1), grouped_bias, stride,
                 padding, dilation, groups * B)
        out = out.unflatten(1, (B, w.shape[1])).transpose(0, 1)
    if b_bdim is not None:
        out = out + bias.movedim(b_bdim, 0)[:, None, :, None, None]
    return (out.squeeze(1) if unbatched else out), 0


def grad_input_vmap(info, in_dims, grad_output, weight, input_size, stride, padding, dilation,
                    groups):
    B = info.batch_size
    g_bdim, w_bdim = in_dims[:2]
    input_size = list(input_size)
    unbatched = len(input_size) == 3
    if unbatched:
        grad_output = _logical_batch(_front(grad_output, g_bdim), g_bdim)
        g_bdim = None if g_bdim is None else 0
        input_size = [1] + input_size
    g = _batched(grad_output, g_bdim, B)  # (B, N, K, OH, OW)
    if w_bdim is None:
        out = ops.conv2d_grad_input(g.flatten(0, 1), weight, [B * input_size[0]] + input_size[1:],
                                    stride, padding, dilation, groups)
        out = out.unflatten(0, (B, input_size[0]))
    else:
        w = weight.movedim(w_bdim, 0)
        size = [input_size[0], B * input_size[1]] + input_size[2:]
        out = ops.conv2d_grad_input(g.transpose(0, 1).flatten(1, 2), w.flatten(0, 1), size,
                                    stride, padding, dilation, groups * B)
        out = out.unflatten(1, (B, input_size[1])).transpose(0, 1)
    return (out.squeeze(1) if unbatched else out), 0


def grad_weight_vmap(info, in_dims, grad_output, input, weight_size, stride, padding, dilation,
                     groups):
    B = info.batch_size
    g_bdim, x_bdim = in_dims[:2]
    if input.dim() - (x_bdim is not None) == 3:
        grad_output = _logical_batch(_front(grad_output, g_bdim), g_bdim)
        input = _logical_batch(_front(input, x_bdim), x_bdim)
        g_bdim = None if g_bdim is None else 0
        x_bdim = None if x_bdim is None else 0
    g = _batched(grad_output, g_bdim, B).transpose(0, 1).flatten(1, 2)  # (N, B*K, OH, OW)
    x = _batched(input, x_bdim, B).transpose(0, 1).flatten(1, 2)  # (N, B*C, H, W)
    size = [B * weight_size[0]] + list(weight_size[1:])
    out = ops.conv2d_grad_weight(g, x, size, stride, padding, dilation, groups * B)
    return out.unflatten(0, (B, weight_size[0])), 0


def conv2d_padding_vmap(info, in_dims, input, weight, bias=None, stride=(1,), padding="valid",
                        dilation=(1,), groups=1):
    return conv2d_vmap(info, in_dims, input, weight, bias, stride, padding, dilation, groups)


torch.library.register_vmap(ops.conv2d.default, conv2d_vmap)
torch.library.register_vmap(ops.conv2d.padding, conv2d_padding_vmap)
torch.library.register_vmap(ops.conv2d_grad_input.default, grad_input_vmap)
torch.library.register_vmap(ops.conv2d_grad_weight.default, grad_weight_vmap)
