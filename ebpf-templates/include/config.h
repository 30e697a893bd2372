/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The settings of a body (`from_container.c`, `to_container.c`): which
 * policy lookups it makes. Endpoints whose policies need the same lookups
 * share a body (see "Stubs and bodies" in abi.h). Values that change when
 * policy changes (enforcement, identity) live in the generation-keyed maps
 * instead, so that they switch atomically with the rest of the policy; the
 * lookup switches here only ever *enable* work, so a body with more of them
 * set stays correct for either generation.
 *
 * Every setting is declared here, once, with its description; the Rust
 * mirror (`ebpf-templates/src/config.rs`) writes them by name, and the ABI
 * test checks its names and sizes against the `.rodata` of the objects'
 * BTF.
 */
#ifndef POLICYC_CONFIG_H
#define POLICYC_CONFIG_H

#include "settings.h"

/* Whether the endpoint's ingress policy has entries for specific peers. */
DECLARE_CONFIG(__u8, ingress_by_peer, "ingress policy has per-peer entries")
/* Whether the endpoint's ingress policy has entries for every peer. */
DECLARE_CONFIG(__u8, ingress_any_peer, "ingress policy has wildcard-peer entries")
/* Whether the endpoint's egress policy has entries for specific peers. */
DECLARE_CONFIG(__u8, egress_by_peer, "egress policy has per-peer entries")
/* Whether the endpoint's egress policy has entries for every peer. */
DECLARE_CONFIG(__u8, egress_any_peer, "egress policy has wildcard-peer entries")

#endif /* POLICYC_CONFIG_H */
