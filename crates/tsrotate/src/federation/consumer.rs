//! Consumers outside GitHub Actions, which tsrotate does not rewrite: the exact change to make.
//!
//! A consumer that holds the credential in a Kubernetes Secret, a Helm values file or a
//! container's environment can present an identity token too, but what produces the token
//! (a projected service-account token, a cloud provider's metadata service) is set up next to
//! it, which tsrotate cannot see. So for these it prints the change and keeps the old
//! credential until the user says the consumer has moved.

use std::fmt::Write as _;

use super::Identity;

/// Which kind of consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `tailscale/tailscale` containerboot (Docker, a Kubernetes sidecar): environment.
    Containerboot,
    /// The Tailscale Kubernetes operator's Helm chart: `oauth` values.
    OperatorHelm,
    /// Anything else that runs `tailscale up`.
    Cli,
}

impl Kind {
    /// All kinds, for help texts.
    pub const ALL: [Self; 3] = [Self::Containerboot, Self::OperatorHelm, Self::Cli];

    /// The name used on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Containerboot => "containerboot",
            Self::OperatorHelm => "operator-helm",
            Self::Cli => "cli",
        }
    }
}

/// The change that moves a consumer of `kind` to `identity`, as text to show.
#[must_use]
pub fn instructions(kind: Kind, identity: &Identity) -> String {
    let Identity {
        client_id,
        audience,
    } = identity;
    let mut out = String::new();
    match kind {
        Kind::Containerboot => {
            let _ = writeln!(
                out,
                "containerboot: remove TS_AUTHKEY / TS_AUTH_KEY / TS_CLIENT_SECRET from the container's environment and set"
            );
            let _ = writeln!(out, "  TS_CLIENT_ID={client_id}");
            let _ = writeln!(
                out,
                "  TS_ID_TOKEN=<path or value of the workload's identity token>   (or TS_AUDIENCE={audience} where the token is discovered: GitHub Actions, AWS, GCP)"
            );
            let _ = writeln!(
                out,
                "  on Kubernetes, project a service-account token with audience `{audience}` and point TS_ID_TOKEN at it"
            );
        }
        Kind::OperatorHelm => {
            let _ = writeln!(
                out,
                "Tailscale operator Helm values: replace `oauth.clientSecret` (or the `operator-oauth` Secret) with"
            );
            let _ = writeln!(out, "  oauth:");
            let _ = writeln!(out, "    clientId: {client_id}");
            let _ = writeln!(out, "    audience: {audience}");
            let _ = writeln!(
                out,
                "  and delete the `operator-oauth` Secret once the operator has restarted and joined"
            );
        }
        Kind::Cli => {
            let _ = writeln!(
                out,
                "tailscale up: replace --authkey=... with --client-id={client_id} --audience={audience} (or --id-token=<token>)"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_names_the_identity_and_the_audience() {
        let identity = Identity {
            client_id: "kFED1CNTRL".into(),
            audience: "api.tailscale.com/aud".into(),
        };
        for kind in Kind::ALL {
            let text = instructions(kind, &identity);
            assert!(text.contains("kFED1CNTRL"), "{}", kind.name());
            assert!(text.contains("api.tailscale.com/aud"), "{}", kind.name());
        }
    }
}
