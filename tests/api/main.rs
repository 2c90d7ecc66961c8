//! End-to-end tests: the real app on a random port with a fresh database, driven over HTTP.
//!
//! Every test runs against SQLite and against PostgreSQL. PostgreSQL comes from
//! `GATEWAY_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`); if it
//! cannot be reached, the PostgreSQL runs are reported as ignored with the reason, unless
//! `GATEWAY_REQUIRE_POSTGRES=1` (as in CI), which makes that a failure.

mod access;
mod appointments;
mod background_planning;
mod broadcasts;
mod browser;
mod cancel;
mod channel_costs;
mod conformance;
mod console;
mod console_approval;
mod crash;
mod dispatch_control;
mod errors;
mod fair_share;
mod fallback;
mod federations;
mod groups;
mod helpers;
mod imports;
mod isolation_cluster;
mod isolation_dispatch;
mod isolation_intake;
mod isolation_push;
mod isolation_render;
mod isolation_uploads;
mod logs;
mod metrics;
mod nhs_app;
mod nhs_notify_peer;
mod practice_senders;
mod providers_e2e;
mod push_pages;
mod push_receipts;
mod receipts;
mod scheduled;
mod sms_peer;
mod staff;
mod staff_texts;
mod status_feeds;
mod status_page;
mod surgery_api;
mod templates;
mod tenancy;
mod traces;

// Peers shared with the provider tests; each includer uses only some of their items.
#[allow(dead_code)]
#[path = "../support/push_service.rs"]
mod push_service;
#[allow(dead_code)]
#[path = "../support/smtp_server.rs"]
mod smtp_server;
// Shared with the cluster tests and the benchmarks.
#[allow(dead_code)]
#[path = "../support/scratch.rs"]
mod scratch;
#[allow(dead_code)]
#[path = "../support/seed.rs"]
mod seed;

use std::future::Future;
use std::pin::Pin;

use helpers::Db;
use libtest_mimic::{Arguments, Trial};

type TestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type TestFn = fn(Db) -> TestFuture;

macro_rules! tests {
    ($($path:path),* $(,)?) => {
        vec![$((stringify!($path), (|db| Box::pin($path(db)) as TestFuture) as TestFn)),*]
    };
}

fn main() {
    let args = Arguments::from_args();
    let all: Vec<(&str, TestFn)> = tests![
        isolation_render::unbounded_rendering_is_refused_or_stopped,
        isolation_render::failing_template_fails_its_broadcast_alone,
        broadcasts::status_change_reaches_each_eligible_patient_once,
        broadcasts::idempotency_key_replays_and_refuses_a_different_body,
        broadcasts::messages_page_through_in_order,
        broadcasts::upsert_replaces_changed_contacts_and_lets_repeats_win,
        broadcasts::patient_batches_report_each_bad_item,
        broadcasts::interrupted_fanout_resumes_without_duplicates,
        broadcasts::newer_status_change_withdraws_unsent_messages,
        broadcasts::quiet_hours_hold_bulk_sms_and_push_but_not_email,
        cancel::cancelling_mid_broadcast_stops_unsent_messages_at_once,
        cancel::a_cancelled_fanout_plans_nothing_more,
        cancel::another_practice_cannot_cancel,
        cancel::console_stops_a_broadcast_with_its_csrf_token,
        tenancy::another_practice_sees_nothing,
        practice_senders::each_practice_texts_from_its_own_sender,
        tenancy::keys_are_required_and_scoped,
        access::a_revoked_key_is_refused_by_another_instance_within_a_heartbeat,
        access::expired_and_rotated_keys_are_refused_and_lists_show_last_use,
        access::a_disabled_user_is_refused_and_their_session_ends,
        access::the_command_line_lists_revokes_and_rotates_keys_and_disables_users,
        access::errors_carry_the_request_id_and_explain_401s,
        logs::json_logs_parse_line_by_line_and_carry_the_clients_request_id,
        fallback::an_unconfirmed_urgent_text_is_followed_once_by_email,
        fallback::an_unconfirmed_closure_text_falls_back_after_two_hours,
        fallback::two_instances_and_a_restart_follow_up_exactly_once,
        channel_costs::a_broadcast_uses_each_patients_cheapest_channel_and_shows_its_cost,
        channel_costs::urgent_messages_go_fastest_first_unless_the_practice_says,
        access::an_admin_disables_a_user_from_the_console_people_page,
        errors::bad_requests_get_clear_4xx_errors,
        crash::killed_worker_loses_nothing,
        crash::shutdown_finishes_in_flight_sends_and_releases_the_rest,
        receipts::receipts_settle_messages_and_forgeries_change_nothing,
        nhs_app::nhs_app_messages_leave_in_batches_with_a_verified_token,
        nhs_app::nhs_notify_429_and_5xx_are_retried_by_our_rules,
        nhs_app::nhs_notify_callbacks_are_verified_and_replays_change_nothing,
        nhs_app::a_patient_not_in_the_nhs_app_falls_through_to_sms,
        receipts::stop_reply_stops_the_next_broadcast,
        receipts::push_subscriptions_are_checked_and_used,
        receipts::email_unsubscribe_link_opts_out_in_one_click,
        providers_e2e::broadcast_reaches_sms_email_and_push_peers,
        providers_e2e::refused_number_is_marked_and_skipped_next_time,
        providers_e2e::refused_number_is_rerouted_to_the_patients_email,
        providers_e2e::refused_number_without_another_channel_is_not_rerouted,
        console::sign_in_sessions_and_csrf,
        console::practice_users_see_only_their_practice,
        dispatch_control::provider_rate_is_never_exceeded,
        dispatch_control::practices_broadcasting_together_take_turns,
        dispatch_control::urgent_message_overtakes_a_queued_broadcast,
        dispatch_control::flaky_provider_loses_nothing_and_honours_retry_after,
        dispatch_control::dead_provider_fails_over_to_the_next,
        dispatch_control::patient_cap_suppresses_extra_broadcast_messages,
        dispatch_control::quiet_hours_hold_dispatch_across_clock_changes,
        dispatch_control::restored_withdraws_closed_messages_already_claimed,
        dispatch_control::supersede_in_quiet_hours_across_the_autumn_change,
        metrics::metrics_are_served_as_prometheus_text,
        push_pages::signup_page_shows_the_practice_and_the_key,
        push_pages::expired_link_says_so,
        push_pages::subscribe_refuses_tampered_and_expired_tokens,
        push_pages::subscribe_and_unsubscribe_change_the_patients_contacts,
        push_pages::service_worker_and_script_are_served,
        push_pages::invite_sends_one_urgent_message_with_a_working_link,
        push_pages::without_web_push_or_a_secret_nothing_is_offered,
        push_pages::anonymous_followers_get_practice_wide_notices,
        push_receipts::push_receipts_prove_display_and_reading_once,
        push_receipts::an_urgent_push_never_shown_falls_back_to_one_text,
        push_receipts::forged_and_foreign_push_receipts_change_nothing,
        push_receipts::push_receipts_are_limited_per_client_address,
        push_receipts::a_receipt_before_the_outcome_is_stored_still_counts,
        templates::template_versions_history_diff_and_rollback,
        templates::template_validation_names_line_and_column,
        templates::sms_segments_preview_table,
        templates::preview_shows_audience_for_a_practice_broadcast,
        templates::welsh_and_bilingual_wording,
        templates::welsh_headline_reaches_welsh_patients,
        templates::unedited_shipped_wording_follows_an_upgrade,
        imports::every_error_class_is_reported_by_row_and_column,
        imports::bom_semicolons_crlf_quotes_and_a_header_mapping,
        imports::reimporting_the_same_file_changes_nothing_and_keeps_opt_outs,
        imports::replace_deactivates_exactly_the_missing_patients,
        imports::killed_import_resumed_ends_as_a_clean_one,
        imports::uploads_stream_past_the_body_limit_and_bad_requests_are_refused,
        appointments::appointment_changes_message_the_right_patient_urgently,
        appointments::appointment_change_retry_sends_once,
        appointments::appointments_import_from_csv_with_per_row_errors,
        appointments::closure_for_booked_patients_names_their_appointment,
        appointments::closure_for_all_ignores_appointments,
        appointments::closure_for_both_tells_each_patient_once,
        isolation_push::internal_push_addresses_are_refused,
        isolation_push::anonymous_follows_are_limited,
        isolation_intake::supersede_survives_a_crash_and_a_replay,
        isolation_intake::supersede_repairs_what_an_older_crash_left,
        isolation_intake::supersede_withdraws_page_by_page_leaving_sent_alone,
        isolation_intake::stop_reaches_every_practice_holding_the_number,
        isolation_intake::replace_import_without_rows_is_refused,
        isolation_intake::receipts_count_only_with_their_own_provider,
        isolation_intake::concurrent_status_changes_leave_only_the_newest,
        isolation_dispatch::a_push_service_asking_for_years_pauses_only_itself,
        isolation_dispatch::a_slow_sms_provider_does_not_hold_back_email_and_push,
        isolation_uploads::large_appointment_csv_is_linear_capped_and_isolated,
        isolation_uploads::signin_floods_lock_names_and_addresses_audited_and_isolated,
        isolation_cluster::a_lease_taken_over_before_the_send_is_not_sent,
        staff::staff_numbers_are_added_listed_and_removed,
        staff::duplicate_and_invalid_staff_numbers_are_refused,
        staff::another_practice_cannot_see_or_change_staff_numbers,
        staff_texts::a_texted_status_change_posts_only_with_its_code,
        staff_texts::a_welsh_command_gives_its_headline_in_welsh,
        staff_texts::an_expired_code_posts_nothing,
        staff_texts::a_pin_and_the_rate_limit_guard_commands,
        staff_texts::a_large_broadcast_needs_a_second_person,
        console_approval::the_console_approves_what_staff_texted,
        status_feeds::supplier_incidents_are_proposed_and_sent_only_when_approved,
        status_page::the_public_page_feed_and_banner_show_the_status_and_no_patient,
        status_page::a_bilingual_practice_shows_welsh_first,
        groups::a_group_change_gives_each_practice_its_own_broadcast_once,
        scheduled::scheduled_notices_are_created_listed_edited_and_cancelled,
        scheduled::a_one_off_notice_fires_once_and_a_late_one_is_missed,
        scheduled::a_weekly_notice_fires_once_per_occurrence_across_the_autumn_change_with_two_instances,
        scheduled::the_console_lists_plans_changes_and_cancels_scheduled_notices,
        scheduled::an_afternoon_closure_is_restored_at_its_end,
        groups::a_group_is_stopped_as_a_whole_once,
        federations::a_federation_key_acts_only_on_its_practices,
        federations::each_caller_sees_only_its_parts_of_a_group,
        background_planning::a_long_list_is_finished_after_the_answer_each_patient_once,
        background_planning::a_status_change_answers_before_its_long_list_is_planned,
        fair_share::every_practice_gets_its_first_text_in_the_first_round,
        surgery_api::a_practice_changes_its_details_and_quiet_hours_hold_with_a_reason,
        surgery_api::patients_are_listed_deactivated_and_erased_without_a_trace,
        surgery_api::the_audit_trail_is_read_with_filters_by_each_caller,
        traces::a_status_post_is_followed_to_each_provider_send,
        traces::without_an_endpoint_nothing_is_built_recorded_or_sent,
        traces::a_dead_collector_delays_no_answer,
    ];
    // In headless Chromium, against SQLite only (see browser.rs).
    let browser_tests: Vec<(&str, TestFn)> = tests![
        browser::console_sign_in_post_status_and_watch_it_complete,
        browser::console_template_edit_preview_save_rollback,
        browser::console_refuses_other_practices_and_forged_forms,
        browser::push_signup_stores_the_subscription_for_the_patient,
        browser::service_worker_shows_a_delivered_push_message,
        browser::a_pushed_message_shown_and_tapped_is_delivered_then_read,
        browser::public_pages_on_a_phone_pass_the_accessibility_check,
        browser::console_pages_fit_a_phone,
        browser::console_sends_one_change_to_three_practices,
        browser::console_stops_a_broadcast_and_a_whole_group,
    ];
    helpers::set_callback_secrets();
    let postgres = helpers::postgres_server();
    if let Err(reason) = &postgres {
        if std::env::var("GATEWAY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("error: GATEWAY_REQUIRE_POSTGRES=1 but {reason}");
            std::process::exit(1);
        }
        eprintln!("note: PostgreSQL tests skipped (reported as ignored): {reason}");
    }
    let mut trials = Vec::new();
    for (name, test) in all {
        let name = name.replace(' ', "");
        trials.push(Trial::test(format!("sqlite::{name}"), move || {
            helpers::run(test(Db::Sqlite));
            Ok(())
        }));
        let pg_url = postgres.clone().ok();
        trials.push(
            Trial::test(format!("postgres::{name}"), move || {
                let url = pg_url.ok_or("PostgreSQL unavailable")?;
                helpers::run(test(Db::Postgres(url)));
                Ok(())
            })
            .with_ignored_flag(postgres.is_err()),
        );
    }
    trials.extend(browser::trials(browser_tests));
    // The span-exporting tests (traces.rs) run after all the others, one at a time: each
    // sets a tracing dispatcher of its own, and tracing caches which spans are enabled
    // across every live dispatcher and every thread's first use, so tests starting apps
    // beside them now and then left the request's span disabled (no trace context).
    let (alone, together): (Vec<Trial>, Vec<Trial>) = trials
        .into_iter()
        .partition(|trial| trial.name().contains("::traces::"));
    let rest = libtest_mimic::run(&args, together);
    let mut one_at_a_time = args.clone();
    one_at_a_time.test_threads = Some(1);
    let traces = libtest_mimic::run(&one_at_a_time, alone);
    if rest.has_failed() || traces.has_failed() {
        std::process::exit(101);
    }
}
