fn main() {
    let prefix = "tskey-auth-";
    let k = format!("tskey-{}-{}-{}", kind, id, secret);
}
