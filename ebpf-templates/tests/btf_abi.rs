//! The Rust mirror of the ABI against the BTF of the compiled objects:
//! every struct's size and every field's offset, every enum's members and
//! values, every map's type, key and value size and capacity, and the
//! settings in `.rodata` against what `EndpointConfig` writes.
//!
//! The BTF is read here with a small parser of its documented layout
//! (`Documentation/bpf/btf.rst`), so the test depends on nothing but the
//! object bytes.

use object::{Object, ObjectSection};
use policyc_ebpf::abi::{enums, layouts, MapLayout, BODIES, MAPS};
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::{Template, ENDPOINT_STUB};
use std::collections::BTreeMap;

/// A struct of the BTF: size and `(member, byte offset)`.
#[derive(Debug)]
struct BtfStruct {
    size: u32,
    members: Vec<(String, u32, u32)>,
}

struct Btf {
    structs: BTreeMap<String, BtfStruct>,
    /// Every named enum: `(enumerator, value)` in declaration order.
    enums: BTreeMap<String, Vec<(String, i64)>>,
    /// Every type by id (1-based): `(kind, name, size_or_type, extra)`.
    types: Vec<(u32, String, u32, Vec<u32>)>,
    /// Member names of every struct type, by id (empty for other kinds).
    member_names: Vec<Vec<String>>,
}

const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_PTR: u32 = 2;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_ENUM64: u32 = 19;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn parse_btf(object: &[u8]) -> Btf {
    let file = object::File::parse(object).unwrap();
    let section = file.section_by_name(".BTF").expect("object has a .BTF section (built with -g)");
    let data = section.data().unwrap();
    assert_eq!(u16::from_le_bytes([data[0], data[1]]), 0xeb9f, "BTF magic (little-endian objects)");
    let hdr_len = u32_at(data, 4) as usize;
    let (type_off, type_len) = (u32_at(data, 8) as usize, u32_at(data, 12) as usize);
    let str_off = u32_at(data, 16) as usize;
    let types_bytes = &data[hdr_len + type_off..hdr_len + type_off + type_len];
    let strings = &data[hdr_len + str_off..];
    let name = |off: u32| {
        let s = &strings[off as usize..];
        String::from_utf8_lossy(&s[..s.iter().position(|&c| c == 0).unwrap()]).into_owned()
    };
    let mut structs = BTreeMap::new();
    let mut enums = BTreeMap::new();
    let mut types = Vec::new();
    let mut member_names = Vec::new();
    let mut at = 0;
    while at < types_bytes.len() {
        let (name_off, info, size) =
            (u32_at(types_bytes, at), u32_at(types_bytes, at + 4), u32_at(types_bytes, at + 8));
        at += 12;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31 == 1;
        let extra_words = match kind {
            1 | 14 | 17 => 1,
            3 => 3,
            4 | 5 | 15 | 19 => 3 * vlen,
            6 | 13 => 2 * vlen,
            _ => 0,
        };
        let extra: Vec<u32> = (0..extra_words).map(|i| u32_at(types_bytes, at + 4 * i)).collect();
        member_names.push(if kind == KIND_STRUCT { extra.chunks(3).map(|m| name(m[0])).collect() } else { vec![] });
        if kind == KIND_STRUCT {
            let members = extra
                .chunks(3)
                .map(|m| {
                    let bits = if kflag { m[2] & 0xff_ffff } else { m[2] };
                    assert_eq!(bits % 8, 0, "no bit fields in the ABI");
                    (name(m[0]), m[1], bits / 8)
                })
                .collect();
            structs.insert(name(name_off), BtfStruct { size, members });
        }
        // An enum's kflag says its values are signed.
        if kind == KIND_ENUM {
            let value = |v: u32| if kflag { i64::from(v as i32) } else { i64::from(v) };
            enums.insert(name(name_off), extra.chunks(2).map(|m| (name(m[0]), value(m[1]))).collect());
        }
        if kind == KIND_ENUM64 {
            let value = |lo: u32, hi: u32| (u64::from(hi) << 32 | u64::from(lo)) as i64;
            enums.insert(name(name_off), extra.chunks(3).map(|m| (name(m[0]), value(m[1], m[2]))).collect());
        }
        types.push((kind, name(name_off), size, extra));
        at += 4 * extra_words;
    }
    Btf { structs, enums, types, member_names }
}

impl Btf {
    fn ty(&self, id: u32) -> &(u32, String, u32, Vec<u32>) {
        &self.types[id as usize - 1]
    }

    /// The number a BTF map definition member encodes: `__uint(name, n)` is
    /// a pointer to an array of `n` ints.
    fn map_uint(&self, member_type: u32) -> u32 {
        let (kind, _, target, _) = self.ty(member_type);
        assert_eq!(*kind, KIND_PTR);
        let (kind, _, _, extra) = self.ty(*target);
        assert_eq!(*kind, KIND_ARRAY);
        extra[2]
    }

    /// Size of the type a `__type(name, T)` member points to.
    fn map_type_size(&self, member_type: u32) -> u32 {
        let (kind, _, target, _) = self.ty(member_type);
        assert_eq!(*kind, KIND_PTR);
        let mut id = *target;
        loop {
            let (kind, name, size, _) = self.ty(id);
            match kind {
                // typedef, volatile, const, restrict: follow.
                8..=11 => id = *size,
                1 | 4 => return *size,
                other => panic!("unexpected kind {other} for map type `{name}`"),
            }
        }
    }

    /// The variables of `.rodata`: `(name, size, type)`.
    fn rodata(&self) -> Vec<(String, u32, u32)> {
        let Some(datasec) = self.types.iter().find(|t| t.0 == KIND_DATASEC && t.1 == ".rodata") else {
            return Vec::new();
        };
        datasec
            .3
            .chunks(3)
            .map(|var| {
                let (kind, name, var_type, _) = self.ty(var[0]);
                assert_eq!(*kind, KIND_VAR);
                (name.clone(), var[2], *var_type)
            })
            .collect()
    }

    /// The qualifier kinds (`volatile`, `const`, `restrict`) in front of
    /// type `id`, through typedefs.
    fn qualifiers(&self, mut id: u32) -> Vec<u32> {
        let mut out = Vec::new();
        while let (kind @ KIND_TYPEDEF..=KIND_RESTRICT, _, next, _) = self.ty(id) {
            if *kind != KIND_TYPEDEF {
                out.push(*kind);
            }
            id = *next;
        }
        out
    }

    /// The maps of `.maps`: name → definition members `(member, type)`.
    fn maps(&self) -> BTreeMap<String, Vec<(String, u32)>> {
        let datasec = self.types.iter().find(|t| t.0 == KIND_DATASEC && t.1 == ".maps").expect(".maps section");
        datasec
            .3
            .chunks(3)
            .map(|var| {
                let (kind, name, var_type, _) = self.ty(var[0]);
                assert_eq!(*kind, KIND_VAR);
                let (_, _, _, members) = self.ty(*var_type);
                let names = &self.member_names[*var_type as usize - 1];
                let fields = names.iter().cloned().zip(members.chunks(3).map(|m| m[1])).collect();
                (name.clone(), fields)
            })
            .collect()
    }
}

#[test]
fn rust_structs_match_the_btf_of_both_templates() {
    for template in Template::ALL {
        let btf = parse_btf(template.bytes());
        for layout in layouts() {
            let name = layout.name;
            let s = btf.structs.get(name).unwrap_or_else(|| panic!("{template:?}: no struct `{name}` in BTF"));
            assert_eq!(s.size as usize, layout.size, "{template:?}: size of `{name}`");
            let btf_fields: Vec<(&str, usize)> = s.members.iter().map(|(n, _, o)| (n.as_str(), *o as usize)).collect();
            assert_eq!(btf_fields, layout.fields, "{template:?}: fields and offsets of `{name}`");
        }
    }
}

/// Checks the `.maps` definitions of `object` (named `what`) against
/// `layouts`, which must be all of them.
fn check_maps(what: &str, object: &[u8], layouts: &[MapLayout]) {
    let btf = parse_btf(object);
    let maps = btf.maps();
    let names: Vec<&str> = maps.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = layouts.iter().map(|m| m.name).collect();
    expected.sort();
    assert_eq!(names, expected, "{what}: map names");
    for layout in layouts {
        let members: BTreeMap<&str, u32> = maps[layout.name].iter().map(|(n, t)| (n.as_str(), *t)).collect();
        assert_eq!(btf.map_uint(members["type"]), layout.map_type, "{what}: {}: type", layout.name);
        assert_eq!(btf.map_uint(members["max_entries"]), layout.max_entries, "{what}: {}: max_entries", layout.name);
        let key = members.get("key").map_or(0, |&t| btf.map_type_size(t));
        let value = members.get("value").map_or(0, |&t| btf.map_type_size(t));
        assert_eq!((key, value), (layout.key_size, layout.value_size), "{what}: {}: key and value size", layout.name);
    }
}

#[test]
fn map_definitions_match_the_rust_layouts() {
    for template in Template::ALL {
        check_maps(template.program_name(), template.bytes(), &MAPS);
    }
    check_maps("endpoint.o", ENDPOINT_STUB, &[BODIES]);
}

#[test]
fn rust_constants_match_the_enums_in_the_btf_of_every_object() {
    let objects = [
        (Template::FromContainer.program_name(), Template::FromContainer.bytes()),
        (Template::ToContainer.program_name(), Template::ToContainer.bytes()),
        ("endpoint.o", ENDPOINT_STUB),
    ];
    for (what, object) in objects {
        let btf = parse_btf(object);
        for layout in enums() {
            let name = layout.name;
            let members = btf.enums.get(name).unwrap_or_else(|| panic!("{what}: no enum `{name}` in BTF"));
            let members: Vec<(&str, i64)> = members.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            assert_eq!(members, layout.members, "{what}: members and values of enum `{name}`");
        }
    }
}

/// The global of `include/abi.h` that keeps the enums in the BTF; the only
/// variable in `.rodata` that is not a setting.
const ENUM_HOLDER: &str = "abi_enums";

/// Checks that the settings in the `.rodata` of `object` (named `what`)
/// are exactly `settings`, with their sizes (clang lays them out in its own
/// order, so names are compared sorted), and are
/// `volatile const` (so the verifier sees the written value, and clang
/// cannot fold the default into the code).
fn check_settings(what: &str, object: &[u8], settings: &[(&'static str, Vec<u8>)]) {
    let btf = parse_btf(object);
    let vars = btf.rodata();
    let found: BTreeMap<&str, usize> =
        vars.iter().filter(|(n, ..)| n != ENUM_HOLDER).map(|(n, size, _)| (n.as_str(), *size as usize)).collect();
    let expected: BTreeMap<&str, usize> = settings.iter().map(|(n, bytes)| (*n, bytes.len())).collect();
    assert_eq!(found, expected, "{what}: settings in `.rodata` (name, size)");
    for (name, _, ty) in vars.iter().filter(|(n, ..)| n != ENUM_HOLDER) {
        let mut qualifiers = btf.qualifiers(*ty);
        qualifiers.sort();
        assert_eq!(qualifiers, [KIND_VOLATILE, KIND_CONST], "{what}: `{name}` is `volatile const`");
    }
    assert!(vars.iter().any(|(n, ..)| n == ENUM_HOLDER), "{what}: `{ENUM_HOLDER}` in `.rodata`");
}

#[test]
fn settings_in_rodata_match_what_endpoint_config_writes() {
    let config = EndpointConfig::default();
    for template in Template::ALL {
        check_settings(template.program_name(), template.bytes(), &config.body_values());
    }
    check_settings("endpoint.o", ENDPOINT_STUB, &config.stub_values());
}
