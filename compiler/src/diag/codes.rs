//! The catalogue of diagnostic codes. Codes are stable: never renumber one,
//! only add new ones.

/// A diagnostic code with its one-line summary (shown by SARIF rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code {
    /// `E0102`, `W0005`: `E` for errors, `W` for warnings.
    pub id: &'static str,
    /// What the code means.
    pub summary: &'static str,
}

macro_rules! codes {
    ($($name:ident = $id:literal, $summary:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $name: Code = Code { id: $id, summary: $summary };
        )*
        /// Every code, in order.
        pub const ALL: &[Code] = &[$($name),*];
    };
}

codes! {
    IO = "E0001", "a file or directory cannot be read";
    YAML_SYNTAX = "E0002", "invalid YAML or JSON syntax";
    NOT_AN_OBJECT = "E0003", "a document is not a Kubernetes object";
    WRONG_TYPE = "E0004", "a field has the wrong type";
    MISSING_FIELD = "E0005", "a required field is missing";
    UNKNOWN_FIELD = "W0006", "a field is not part of the schema and is ignored";
    DUPLICATE_OBJECT = "E0007", "the same object is defined twice";
    INVALID_NAME = "W0008", "an object name or namespace is not one the API server accepts";
    DUPLICATE_KEY = "E0009", "a YAML mapping has the same key twice";
    EXCESSIVE_ALIASING = "E0010", "YAML aliases expand to far more nodes than their document holds";
    NESTING_TOO_DEEP = "E0011", "YAML collections are nested deeper than policyc reads";
    FILE_TOO_LARGE = "E0012", "a file is larger than the limit on one file";
    INPUT_TOO_LARGE = "E0013", "the inputs together are larger than the limit on all input";
    NAME_TOO_LONG = "E0014", "an object name or namespace is longer than the API server accepts";
    NOT_A_FILE = "W0015", "a directory entry is neither a regular file nor a directory and is skipped";
    DIRECTORY_LOOP = "W0016", "a directory is reached a second time (through a link) and is read once";
    UNKNOWN_TAG = "W0017", "a YAML tag is not one of the core schema and is ignored";
    TAG_MISMATCH = "E0018", "a YAML tag does not fit the value it is on";
    YAML_VERSION = "E0019", "a `%YAML` directive names a version other than 1.x";
    POLICY_KIND_NOT_COMPILED = "W0020", "an object of a network-policy kind policyc does not compile is skipped";
    UNKNOWN_API_VERSION = "W0021", "an object of a kind policyc reads has an `apiVersion` it does not read and is skipped";
    INVALID_CIDR = "E0101", "a CIDR is invalid";
    EXCEPT_OUTSIDE_CIDR = "E0102", "an `except` prefix is not inside its `cidr`";
    PORT_OUT_OF_RANGE = "E0103", "a port is out of range";
    END_PORT_BEFORE_PORT = "E0104", "`endPort` is smaller than `port`";
    END_PORT_WITH_NAMED_PORT = "E0105", "`endPort` is used with a named port or without a port";
    UNKNOWN_PROTOCOL = "E0106", "a protocol is not one of the supported ones";
    INVALID_LABEL_KEY = "E0107", "a label key is invalid";
    INVALID_LABEL_VALUE = "E0108", "a label value is invalid";
    UNKNOWN_OPERATOR = "E0109", "a selector operator is unknown";
    OPERATOR_VALUES = "E0110", "a selector operator has values it must not have, or lacks values it needs";
    SELECTOR_CHOICE = "E0111", "a Cilium rule has both or neither of `endpointSelector` and `nodeSelector`";
    FQDN_NOT_COMPILABLE = "W0112", "`toFQDNs` cannot be resolved ahead of time: the traffic it would allow is denied";
    UNKNOWN_ENTITY = "E0113", "an entity is not one Cilium knows";
    INVALID_POLICY_TYPE = "E0114", "a `policyTypes` entry is neither `Ingress` nor `Egress`";
    INVALID_PORT_NAME = "E0115", "a named port is not a valid port name";
    INVALID_ICMP = "E0116", "an ICMP type or family is invalid";
    INVALID_IP = "E0117", "an IP address is invalid";
    UNSUPPORTED_FIELD = "W0118", "a field is understood but not enforced by policyc";
    EMPTY_SPEC = "E0119", "a Cilium policy has neither `spec` nor `specs`";
    L7_NEEDS_PROXY = "W0120", "L7 rules redirect traffic to a proxy that the bundle only describes";
    POLICY_MAP_CAPACITY = "E0301", "an endpoint's policy map would exceed its capacity";
    UNKNOWN_NODE = "E0302", "a node named on the command line is not in the input";
    IGNORED_DIRECTION = "W0121", "rules of a direction not listed in `policyTypes` are ignored";
    IP_BLOCK_WITH_SELECTOR = "E0122", "a NetworkPolicy peer has `ipBlock` together with a selector";
    EMPTY_PEER = "E0123", "a NetworkPolicy peer has none of `podSelector`, `namespaceSelector` and `ipBlock`";
    NO_SERVICE_NAME = "W0124", "an `EndpointSlice` has no `kubernetes.io/service-name` label and is ignored";
    L7_IN_DENY = "E0125", "a Cilium deny rule has L7 rules, which only allow rules can have";
    INVALID_L7 = "E0126", "a Cilium port rule's L7 `rules` name no parser or more than one";
    NODE_SELECTOR_IN_CNP = "E0127", "a namespaced CiliumNetworkPolicy uses `nodeSelector`, which only cluster-wide policies can";
    SUBJECT_NAMESPACE_OVERRIDDEN = "W0128", "an `endpointSelector` of a CiliumNetworkPolicy names a namespace, which Cilium replaces with the policy's own";
    CONTAINER_PORT_WITHOUT_NUMBER = "W0129", "a container port has no `containerPort` and is ignored";
    CILIUM_REJECTED_RULE = "E0130", "a Cilium rule combines fields or values that Cilium rejects together";
    END_PORT_IGNORED = "W0131", "`endPort` with a named port, which Cilium ignores";
    EXTENDED_PROTOCOL_NOT_MATCHED = "W0132", "a protocol without ports (VRRP, IGMP) that policyc's datapath does not match: the entry matches nothing";
    SERVICE_NOT_RESOLVED = "W0133", "a `toServices` entry names no Service of the input, or only Services without selector or endpoints: it selects nothing";
    UNMATCHED_SELECTOR = "W0201", "a selector matches no endpoint of the input";
    UNPROTECTED_POD = "W0202", "a pod is selected by no policy in a namespace where other pods are isolated";
    POLICY_WITHOUT_EFFECT = "W0203", "a policy selects endpoints but neither allows, denies nor isolates anything";
    UNDEFINED_NAMED_PORT = "W0204", "a named port is defined by none of the pods it applies to";
    EXCEPT_EXCLUDES_ALL = "W0205", "an `except` prefix excludes the whole `cidr`";
    WORLD_INGRESS_ALL_PORTS = "W0206", "ingress from the whole world is allowed on every port";
    SHADOWED_RULE = "W0207", "an allow rule has no effect: a deny rule or another allow rule of the same policy covers it";
    HOST_NETWORK_ONLY = "W0208", "a policy selects only host-network pods, whose traffic is their node's: it applies to nothing";
    ADMIN_PRIORITY_OUT_OF_RANGE = "E0150", "an admin policy's `priority` is outside 0-1000";
    ADMIN_ONE_OF = "E0151", "an admin policy's subject, peer or port sets none, or more than one, of its alternatives";
    ADMIN_ACTION = "E0152", "an admin policy rule's `action` is not one its kind allows";
    ADMIN_LIMIT = "E0153", "an admin policy's list or rule name is longer than its CRD allows, or a list that needs an item is empty";
    ADMIN_NAMED_PORT_WITH_ADDRESSES = "W0154", "an admin egress rule uses a named port together with `networks`, `nodes` or `domainNames` peers: it matches only the rule's pod peers";
    BASELINE_NAME = "E0155", "a BaselineAdminNetworkPolicy is not named `default`";
    ADMIN_PORT_RANGE = "E0156", "an admin policy port range does not have `start` below `end`";
    ADMIN_TIER = "E0157", "a ClusterNetworkPolicy's `tier` is neither `Admin` nor `Baseline`";
    NAMESPACED_POD_SELECTOR_MISSING = "W0159", "a `pods` subject or peer lacks `namespaceSelector` or `podSelector`, which its CRD requires: read as `{}` (all)";
    NETWORK_HOST_BITS = "W0160", "a `networks` CIDR has host bits set: read as its network, as `net.ParseCIDR` does";
    DOMAIN_NAMES_NOT_COMPILABLE = "W0158", "`domainNames` cannot be resolved ahead of time: the peer matches nothing";
    TIERS_NOT_ENFORCED = "E0350", "an admin rule's `networks` or `nodes` peer tells apart nodes of one node identity, which the datapath cannot";
    INVALID_SERVICE_TYPE = "E0180", "a Service's `type` is not one Kubernetes defines";
    INVALID_TRAFFIC_POLICY = "E0181", "a Service's traffic policy is neither `Cluster` nor `Local`";
    INVALID_SESSION_AFFINITY = "E0182", "a Service's session affinity is neither `None` nor `ClientIP`, or its timeout is outside 1-86400 seconds";
    SERVICE_TYPE_CONFLICT = "E0183", "a Service field is not allowed with the Service's `type`";
    EXTERNAL_POLICY_NOT_EXTERNAL = "W0184", "`externalTrafficPolicy` on a Service with no node port, external IP or load balancer: it has no effect";
    DUPLICATE_SERVICE_PORT = "E0185", "two ports of a Service have the same protocol and port, node port or name";
    SERVICE_SELECTOR_UNMATCHED = "W0280", "a Service's selector matches no pod or workload of its namespace, and it has no EndpointSlices";
    SERVICE_TARGET_PORT_UNDEFINED = "W0281", "a Service port's named `targetPort` is defined by none of the pods its selector matches";
    SERVICE_PORT_WITHOUT_BACKENDS = "W0282", "a Service port has no usable backend: connections to it are refused";
    ADMIN_PRIORITY_TIE = "W0209", "two admin policies of one tier and priority match the same traffic: their order is undefined";
    APISERVER_POD_ADDRESS = "W0210", "an address of Service `default/kubernetes` is a pod's: policyc gives it the pod's identity, not `kube-apiserver`";
}
