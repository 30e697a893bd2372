/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Settings written into a copy of an object before it is loaded. Each is a
 * `volatile const` global in `.rodata`; the loader finds the symbol
 * `config_<name>` and overwrites its bytes (`policyc_ebpf::specialize`),
 * and the verifier then sees the value as a constant and prunes the
 * branches it rules out.
 */
#ifndef POLICYC_SETTINGS_H
#define POLICYC_SETTINGS_H

#include <linux/types.h>

#define DECLARE_CONFIG(type, name, description) \
	volatile const type config_##name = 0;

/* Reads a setting. */
#define CONFIG(name) (config_##name)

#endif /* POLICYC_SETTINGS_H */
