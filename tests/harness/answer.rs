//! Reading the answers of the mesh's RPCs without unwrap chains: `.answer()` for any message,
//! `.case()` and `.bundle()` for the responses that carry one, each failing the test with
//! the status (code, reason, message) when the call was refused.

use onething_proto::{common as cpb, coordinator as bpb};
use tonic_types::StatusExt as _;

/// What a refused call said, for the test's failure message.
pub fn describe(s: &tonic::Status) -> String {
    let reason = s.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default();
    format!("{:?} {reason}: {}", s.code(), s.message())
}

/// The reason code of a refused call (`google.rpc.ErrorInfo`), or "".
pub fn reason_of(s: &tonic::Status) -> String {
    s.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

/// An RPC's answer.
pub trait Answer<M> {
    /// The message.
    ///
    /// # Panics
    /// When the call was refused.
    fn answer(self) -> M;
}

impl<M> Answer<M> for Result<tonic::Response<M>, tonic::Status> {
    #[track_caller]
    fn answer(self) -> M {
        match self {
            Ok(r) => r.into_inner(),
            Err(s) => panic!("the call was refused: {}", describe(&s)),
        }
    }
}

/// A response carrying a case.
pub trait HasCase {
    /// Its case.
    fn into_case(self) -> Option<cpb::Case>;
}

macro_rules! has_case {
    ($($t:ident),*) => {$(
        impl HasCase for cpb::$t {
            fn into_case(self) -> Option<cpb::Case> {
                self.case
            }
        }
    )*};
}
has_case!(
    CreateCaseResponse,
    GetCaseResponse,
    AcceptCaseResponse,
    RequestSupplementResponse,
    SupplyMaterialsResponse,
    StartSpecialProcedureResponse,
    EndSpecialProcedureResponse,
    ApproveCaseResponse,
    RejectCaseResponse,
    WithdrawCaseResponse,
    CancelCaseResponse
);

/// A response carrying a bundle.
pub trait HasBundle {
    /// Its bundle.
    fn into_bundle(self) -> Option<bpb::Bundle>;
}

macro_rules! has_bundle {
    ($($t:ident),*) => {$(
        impl HasBundle for bpb::$t {
            fn into_bundle(self) -> Option<bpb::Bundle> {
                self.bundle
            }
        }
    )*};
}
has_bundle!(SubmitBundleResponse, GetBundleResponse, WatchBundleResponse, WithdrawBundleResponse);

/// The case of an answer.
pub trait CaseAnswer {
    /// The case.
    ///
    /// # Panics
    /// When the call was refused or answered without a case.
    fn case(self) -> cpb::Case;
}

impl<M: HasCase> CaseAnswer for Result<tonic::Response<M>, tonic::Status> {
    #[track_caller]
    fn case(self) -> cpb::Case {
        self.answer().into_case().expect("an answer with a case")
    }
}

/// The bundle of an answer.
pub trait BundleAnswer {
    /// The bundle.
    ///
    /// # Panics
    /// When the call was refused or answered without a bundle.
    fn bundle(self) -> bpb::Bundle;
}

impl<M: HasBundle> BundleAnswer for Result<tonic::Response<M>, tonic::Status> {
    #[track_caller]
    fn bundle(self) -> bpb::Bundle {
        self.answer().into_bundle().expect("an answer with a bundle")
    }
}
