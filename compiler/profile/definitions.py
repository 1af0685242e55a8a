"""What every number of a report means (`DEFINITIONS`), versioned with the report schema."""

from __future__ import annotations

SCHEMA = "kdsnn.report"
SCHEMA_VERSION = 1

DEFINITIONS: dict[str, str] = {
    "per_inference": "Every count is per inference (one sample of T steps), averaged over the N samples run.",
    "spikes": "Binary spikes a population emits in one inference (sum over its neurons and the T steps).",
    "firing_rate": "spikes / (neurons x T): the probability that a neuron fires at a step.",
    "silent_fraction": "Fraction of a population's neurons that never fire during a sample, averaged over samples. Needs spike trains; null without them.",
    "saturated_fraction": "Fraction of a population's neurons that fire at every one of the T steps of a sample, averaged over samples. Needs spike trains; null without them.",
    "synapses": "Synapses of a connection: (source neuron, destination neuron) pairs joined by a weight, zero weights included; dense: n_src x n_dst; conv: for each input position the output positions its kernel taps reach given stride, padding, dilation and groups, counted exactly at the borders.",
    "fan_out": "Synapses leaving one source neuron (see synapses).",
    "acs": "Accumulates (SynOps of binary sources): sum over source neurons of spikes x fan-out, every synapse counted whatever its weight. This is what a Loihi core does (it walks the whole fan-out list of an incoming spike).",
    "macs": "Multiply-accumulates of graded sources (the quantized image sent as graded spikes at every step): sum over steps and input positions with a non-zero value of fan-out.",
    "eff_acs": "NeuroBench Eff_ACs: as acs, counting only synapses with a non-zero integer weight (NeuroBench binarizes the layer's weights and inputs; bias not counted).",
    "eff_macs": "NeuroBench Eff_MACs: as macs, counting only synapses with a non-zero integer weight.",
    "dense_synops": "NeuroBench Dense: synapses x T, every source at every step, as hardware without sparsity would compute.",
    "ann_macs": "Dense MACs of one forward pass of the ANN teacher (conv: C_out x H_out x W_out x C_in/groups x kH x kW; linear: n_in x n_out), attributed to the population its synaptic layer feeds; pooling and bias adds not counted.",
    "student_ann_macs": "Dense MACs of one forward pass of the student run as an ANN: from the student GraphNet when given (same formula as ann_macs), else one MAC per synapse of the IntNet (after pooling was folded into the synaptic layers, which can multiply the synapses); meta.student_ann_macs_source says which.",
    "ops_exact": "True when acs/eff_acs use per-neuron spike counts (spike trains) or a uniform fan-out (dense); false when a conv source's per-neuron spikes were unknown and its mean fan-out was used.",
    "ann_fp32_bytes": "ANN teacher parameters (weights, biases, BatchNorm affine) x 4 bytes.",
    "student_fp32_bytes": "The student's float parameters (kernel weights and biases of the IntNet) x 4 bytes.",
    "snn_weight_bytes": "Integer weights as stored in the IntNet (a conv kernel once) x the connection's weight bits / 8.",
    "snn_bias_bytes": "One bias mantissa and exponent per neuron at the target's bias bits / 8.",
    "snn_state_bytes": "Neuron state: u and v per neuron at the target's state bits (24 on Loihi) / 8.",
    "input_buffer_bytes": "One step of the graded input: input positions x input bits / 8.",
    "synaptic_memory_bits": "Loihi synaptic memory a layer needs: its synapses x weight bits. Assumption: conv weights are stored expanded (one synapse entry per source/destination pair held by a core; no weight sharing across output positions), and the synapse-list header/index bits of the real encoding are not counted, so synaptic-memory-bound core counts are lower bounds.",
    "cores": "Cores of a layer from a greedy packing of its neurons in channel-last order (all channels of an output position together, then the next position), one layer per core (no two layers share a core), opening a new core when the next neuron would exceed neurons/core, synaptic memory/core or the distinct input axons (fan-in) a core can receive.",
    "binding_limit": "The limit that closed most of a layer's cores during packing (neurons, synaptic_memory or fan_in); 'none' when the layer fits one core; 'fan_in' with fits=false when one neuron alone needs more input axons than a core has (it would need a dendritic split over several compartments, not modeled).",
    "chips": "ceil(total cores / cores per chip).",
    "neuron_updates": "Every neuron is updated at every step: active updates = steps at which a neuron fires (= spikes), idle updates = neurons x T - spikes.",
    "energy": "Per inference, pJ, under each named energy model: E_snn = e_ac x ACs + e_mac x MACs + e_synop x (ACs + MACs) + e_active x active updates + e_idle x idle updates, with the model's synapse count basis (effective = eff_acs/eff_macs, all = acs/macs); E_ann = e_mac x ANN dense MACs.",
    "latency_steps": "T steps per sample with zero synaptic delay (intsim); T + depth on Lava, whose connections delay by one step each.",
}
