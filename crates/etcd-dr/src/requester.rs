//! Who asks for a restore or promotion, written into the promotion marker, the restore lock and
//! the record: `user@host` on the command line; the API caller's token and address (and this
//! daemon's host) for `POST /v1/promote`.

use etcd_dr_control::ApiCaller;

/// `user@host` of this etcd-dr (the user behind `sudo` when there is one).
pub fn requested_by() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "root".into());
    format!("{user}@{}", etcd_dr_scheduler::host_name())
}

/// Who asked through the API: `<token> token from <address> (API of <host>)`, never the
/// daemon's own user, which says nothing about the caller.
pub fn requested_through_api(caller: &ApiCaller) -> String {
    format!("{caller} (API of {})", etcd_dr_scheduler::host_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_caller_is_named_by_token_and_address() {
        let caller = ApiCaller {
            address: Some("10.1.2.3:45678".parse().unwrap()),
            token: ApiCaller::PROMOTE_TOKEN,
        };
        let text = requested_through_api(&caller);
        assert!(
            text.starts_with("promote token from 10.1.2.3:45678 (API of "),
            "{text}"
        );
        let unknown = ApiCaller {
            address: None,
            token: ApiCaller::API_TOKEN,
        };
        assert!(requested_through_api(&unknown).starts_with("api token from an unknown address"));
    }
}
