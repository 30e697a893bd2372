/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-endpoint settings. Each is a `volatile const` global in `.rodata`;
 * `policyc compile` writes its value into a copy of the template for every
 * endpoint (it finds the symbol `config_<name>` and overwrites its bytes),
 * and the verifier then prunes the branches an endpoint never takes. Values
 * that change when policy changes (enforcement, identity) live in the
 * generation-keyed maps instead, so that they switch atomically with the
 * rest of the policy; the lookup switches here only ever *enable* work, so a
 * program with more of them set stays correct for either generation.
 *
 * Every setting is declared here, once, with its description; the Rust
 * mirror (`ebpf-templates/src/config.rs`) lists the same names.
 */
#ifndef POLICYC_CONFIG_H
#define POLICYC_CONFIG_H

#include <linux/types.h>

#define DECLARE_CONFIG(type, name, description) \
	volatile const type config_##name = 0;

/* Reads a setting. */
#define CONFIG(name) (config_##name)

/* The endpoint's id on its node: the key of its policy entries. */
DECLARE_CONFIG(__u32, endpoint_id, "endpoint id on its node")
/* Whether the endpoint's ingress policy has entries for specific peers. */
DECLARE_CONFIG(__u8, ingress_by_peer, "ingress policy has per-peer entries")
/* Whether the endpoint's ingress policy has entries for every peer. */
DECLARE_CONFIG(__u8, ingress_any_peer, "ingress policy has wildcard-peer entries")
/* Whether the endpoint's egress policy has entries for specific peers. */
DECLARE_CONFIG(__u8, egress_by_peer, "egress policy has per-peer entries")
/* Whether the endpoint's egress policy has entries for every peer. */
DECLARE_CONFIG(__u8, egress_any_peer, "egress policy has wildcard-peer entries")

#endif /* POLICYC_CONFIG_H */
