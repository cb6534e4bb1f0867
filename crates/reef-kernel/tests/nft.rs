//! libnftables in-process: transactions apply atomically in the calling thread's namespace.

mod common;

use reef_kernel::nft::Nft;

#[test]
fn scripts_apply_atomically_in_a_private_namespace() {
    common::require_root();
    common::isolated(|| {
        let mut nft = Nft::new().expect("nft context");
        nft.run(
            "add table ip t\n\
             add map ip t m { type inet_proto . inet_service : ipv4_addr . inet_service; }\n\
             add element ip t m { tcp . 8080 : 10.0.0.2 . 80 }\n",
        )
        .expect("first transaction");
        let listed = nft.run("list map ip t m\n").expect("list");
        assert!(listed.contains("tcp . 8080 : 10.0.0.2 . 80"), "{listed}");
        // A transaction with one bad line changes nothing.
        let err = nft
            .run("add element ip t m { udp . 53 : 10.0.0.3 . 53 }\nadd element ip t nosuch { 1 }\n")
            .expect_err("bad script");
        assert!(err.to_string().contains("nosuch"), "{err}");
        let listed = nft.run("list map ip t m\n").expect("list");
        assert!(
            !listed.contains("udp . 53"),
            "partial transaction applied: {listed}"
        );
    });
}
