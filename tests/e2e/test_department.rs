//! A controllable test department: a real gRPC CaseService on a real socket, and a real
//! publisher of case events on the department's JetStream stream, whose answers a test
//! commands — hold a department's CreateCase calls until released, fail the next ones,
//! move a case on and publish its event — so each race of the saga plays out the same way
//! every run. It serves any department (the matter code's prefix names it); the calls the
//! coordinator made are kept for the test to check.

use async_nats::jetstream;
use onething_platform::{events::Envelope, lifecycle::State};
use onething_proto::common::{
    self as cpb, CaseState,
    case_service_server::{CaseService, CaseServiceServer},
};
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// The department server; stopped when dropped.
pub struct TestDepartment {
    /// Its gRPC address.
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

#[derive(Default)]
struct Inner {
    js: Option<jetstream::Context>,
    cases: Mutex<HashMap<String, cpb::Case>>,
    by_key: Mutex<HashMap<String, String>>,
    held: Mutex<HashSet<String>>,
    released: tokio::sync::Notify,
    /// CreateCase calls waiting in a hold, by department.
    waiting: Mutex<HashMap<String, usize>>,
    fail_next: Mutex<HashMap<String, usize>>,
    /// (rpc, department, case id) of every call, in order.
    calls: Mutex<Vec<(String, String, String)>>,
}

/// Takes a held call off the waiting count however it ends (answered, or dropped when the
/// caller gave up).
struct Waiting<'a>(&'a Inner, String);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        *self.0.waiting.lock().unwrap().entry(self.1.clone()).or_default() -= 1;
    }
}

impl TestDepartment {
    /// Serves on a free loopback port; events go to `js`.
    pub async fn start(js: jetstream::Context) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner { js: Some(js), ..Default::default() });
        let stop = CancellationToken::new();
        let service = CaseServiceServer::new(Service(inner.clone()));
        let until = stop.clone();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    until.cancelled(),
                )
                .await
        });
        Self { addr, inner, stop }
    }

    /// Its URL, for the coordinator's peers.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on `department`'s CreateCase calls make their case but answer only once
    /// released.
    pub fn hold(&self, department: &str) {
        self.inner.held.lock().unwrap().insert(department.to_string());
    }

    /// Lets `department`'s held calls answer (with the case as it was when they came).
    pub fn release(&self, department: &str) {
        self.inner.held.lock().unwrap().remove(department);
        self.inner.released.notify_waiters();
    }

    /// `department`'s calls waiting in a hold now.
    pub fn waiting(&self, department: &str) -> usize {
        self.inner.waiting.lock().unwrap().get(department).copied().unwrap_or(0)
    }

    /// `department`'s next `n` CreateCase calls fail with UNAVAILABLE.
    pub fn fail_next(&self, department: &str, n: usize) {
        self.inner.fail_next.lock().unwrap().insert(department.to_string(), n);
    }

    /// The calls of `rpc` to `department`, each with its case id (empty for a failed create).
    pub fn calls(&self, rpc: &str, department: &str) -> Vec<String> {
        let calls = self.inner.calls.lock().unwrap();
        calls.iter().filter(|(r, d, _)| r == rpc && d == department).map(|(_, _, c)| c.clone()).collect()
    }

    /// Waits until `department` has a case, and returns its id.
    pub async fn case_in(&self, department: &str) -> String {
        crate::common::eventually(Duration::from_secs(30), "a case in the test department", || async {
            let cases = self.inner.cases.lock().unwrap();
            cases.values().find(|c| c.department == department).map(|c| c.case_id.clone())
        })
        .await
        .unwrap()
    }

    /// Moves case `id` to `state` (one version up) and publishes its event, as the
    /// department's own consumers or clerks would.
    pub async fn advance(&self, id: &str, state: CaseState) {
        let case = {
            let mut cases = self.inner.cases.lock().unwrap();
            let c = cases.get_mut(id).expect("a case of the test department");
            let from = c.state;
            c.state = state as i32;
            c.version += 1;
            if state == CaseState::Approved {
                c.result.insert("outcome".into(), "done".into());
            }
            (c.clone(), from)
        };
        self.publish(&case.0, case.1).await;
    }

    async fn publish(&self, c: &cpb::Case, from: i32) {
        let state = State::from_proto(c.state()).expect("a state");
        let change = cpb::CaseStateChanged {
            case_id: c.case_id.clone(),
            matter_code: c.matter_code.clone(),
            department: c.department.clone(),
            from_state: from,
            to_state: c.state,
            version: c.version,
            idempotency_key: c.idempotency_key.clone(),
            bundle_id: c.bundle_id.clone(),
            ..Default::default()
        };
        let envelope = Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            source: format!("/onething/{}", c.department),
            ce_type: "onething.common.v1.CaseStateChanged".into(),
            subject: format!("cases/{}", c.case_id),
            time: chrono::Utc::now(),
            traceparent: None,
            data: prost::Message::encode_to_vec(&change).into(),
        };
        let mut headers = envelope.to_headers();
        headers.insert("Nats-Msg-Id", envelope.id.as_str());
        let subject = format!("onething.{}.v1.case.{}", c.department, state.as_str());
        let js = self.inner.js.as_ref().unwrap();
        js.publish_with_headers(subject, headers, envelope.data).await.unwrap().await.unwrap();
    }
}

impl Drop for TestDepartment {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Service(Arc<Inner>);

fn department_of(matter: &str) -> String {
    matter.split('.').next().unwrap_or_default().to_string()
}

impl Service {
    fn note(&self, rpc: &str, department: &str, case: &str) {
        self.0.calls.lock().unwrap().push((rpc.into(), department.into(), case.into()));
    }

    fn case(&self, id: &str) -> Result<cpb::Case, Status> {
        self.0.cases.lock().unwrap().get(id).cloned().ok_or_else(|| Status::not_found("no such case"))
    }

    /// Ends case `id` in `state` (WithdrawCase, CancelCase).
    fn end(&self, rpc: &str, id: &str, state: CaseState) -> Result<cpb::Case, Status> {
        let mut cases = self.0.cases.lock().unwrap();
        let c = cases.get_mut(id).ok_or_else(|| Status::not_found("no such case"))?;
        self.note(rpc, &c.department.clone(), id);
        if c.state() == CaseState::Approved {
            return Err(Status::failed_precondition("already approved"));
        }
        c.state = state as i32;
        c.version += 1;
        Ok(c.clone())
    }
}

#[tonic::async_trait]
impl CaseService for Service {
    async fn create_case(
        &self,
        r: Request<cpb::CreateCaseRequest>,
    ) -> Result<Response<cpb::CreateCaseResponse>, Status> {
        let r = r.into_inner();
        let department = department_of(&r.matter_code);
        {
            let mut fail = self.0.fail_next.lock().unwrap();
            if let Some(n) = fail.get_mut(&department)
                && *n > 0
            {
                *n -= 1;
                self.note("CreateCase", &department, "");
                return Err(Status::unavailable("the test department fails this call"));
            }
        }
        // One key, one case; the answer is the case as it was made.
        let existing = self.0.by_key.lock().unwrap().get(&r.idempotency_key).cloned();
        let answer = match existing {
            Some(id) => self.case(&id)?,
            None => {
                // Liaison's filings are decided at once here; the others are accepted.
                let approved = department == "liaison" || department == "household";
                let mut case = cpb::Case {
                    case_id: uuid::Uuid::now_v7().to_string(),
                    matter_code: r.matter_code.clone(),
                    department: department.clone(),
                    state: if approved { CaseState::Approved } else { CaseState::Accepted } as i32,
                    idempotency_key: r.idempotency_key.clone(),
                    bundle_id: r.bundle_id.clone(),
                    version: 1,
                    ..Default::default()
                };
                if approved {
                    case.result.insert("outcome".into(), "done".into());
                }
                self.0.cases.lock().unwrap().insert(case.case_id.clone(), case.clone());
                self.0.by_key.lock().unwrap().insert(r.idempotency_key.clone(), case.case_id.clone());
                case
            }
        };
        self.note("CreateCase", &department, &answer.case_id);
        *self.0.waiting.lock().unwrap().entry(department.clone()).or_default() += 1;
        let _waiting = Waiting(&self.0, department.clone());
        loop {
            let released = self.0.released.notified();
            if !self.0.held.lock().unwrap().contains(&department) {
                break;
            }
            released.await;
        }
        Ok(Response::new(cpb::CreateCaseResponse { case: Some(answer) }))
    }

    async fn get_case(&self, r: Request<cpb::GetCaseRequest>) -> Result<Response<cpb::GetCaseResponse>, Status> {
        let case = self.case(&r.into_inner().case_id)?;
        self.note("GetCase", &case.department, &case.case_id);
        Ok(Response::new(cpb::GetCaseResponse { case: Some(case) }))
    }

    async fn withdraw_case(
        &self,
        r: Request<cpb::WithdrawCaseRequest>,
    ) -> Result<Response<cpb::WithdrawCaseResponse>, Status> {
        let case = self.end("WithdrawCase", &r.into_inner().case_id, CaseState::Withdrawn)?;
        Ok(Response::new(cpb::WithdrawCaseResponse { case: Some(case) }))
    }

    async fn cancel_case(
        &self,
        r: Request<cpb::CancelCaseRequest>,
    ) -> Result<Response<cpb::CancelCaseResponse>, Status> {
        let case = self.end("CancelCase", &r.into_inner().case_id, CaseState::Cancelled)?;
        Ok(Response::new(cpb::CancelCaseResponse { case: Some(case) }))
    }

    // The coordinator makes none of the calls below; the test department says so.
    async fn list_cases(&self, _: Request<cpb::ListCasesRequest>) -> Result<Response<cpb::ListCasesResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
    async fn accept_case(
        &self,
        _: Request<cpb::AcceptCaseRequest>,
    ) -> Result<Response<cpb::AcceptCaseResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
    async fn list_notices(
        &self,
        _: Request<cpb::ListNoticesRequest>,
    ) -> Result<Response<cpb::ListNoticesResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
    async fn request_supplement(
        &self,
        _: Request<cpb::RequestSupplementRequest>,
    ) -> Result<Response<cpb::RequestSupplementResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
    async fn supply_materials(
        &self,
        _: Request<cpb::SupplyMaterialsRequest>,
    ) -> Result<Response<cpb::SupplyMaterialsResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
    async fn start_special_procedure(
        &self,
        _: Request<cpb::StartSpecialProcedureRequest>,
    ) -> Result<Response<cpb::StartSpecialProcedureResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
    async fn end_special_procedure(
        &self,
        _: Request<cpb::EndSpecialProcedureRequest>,
    ) -> Result<Response<cpb::EndSpecialProcedureResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
    async fn approve_case(
        &self,
        _: Request<cpb::ApproveCaseRequest>,
    ) -> Result<Response<cpb::ApproveCaseResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
    async fn reject_case(
        &self,
        _: Request<cpb::RejectCaseRequest>,
    ) -> Result<Response<cpb::RejectCaseResponse>, Status> {
        Err(Status::unimplemented("not a call the coordinator makes"))
    }
}
