"""The overnight queue from the command line: ``mc-beamline queue start|status|stop`` and
``mc-beamline profile install`` (an IPython profile that loads the same beamline session)."""

from __future__ import annotations


def run_queue(args) -> int:
    """``mc-beamline queue``: exit status 3 from ``status`` when the RE Manager does not answer."""
    from mc_beamline.queue_server import manager

    data_dir = args.data_dir.resolve()
    if args.action == "start":
        settings = manager.QueueSettings(
            data_dir=data_dir, zmq_control_addr=args.zmq_control_addr, zmq_info_addr=args.zmq_info_addr,
            redis_addr=args.redis, tiled_uri=args.tiled, tiled_port=args.tiled_port, prefix=args.prefix,
            stop_on_failure=args.stop_on_failure, analysis=not args.no_analysis, timeout_s=args.timeout)
        state = manager.start_queue(settings)
        service = "analysis service running" if state.get("analysis") else "no analysis service"
        print(f"Queue running for {data_dir}: RE Manager at {state['zmq_control_addr']}, "
              f"Redis at {state['redis_addr']}, Tiled at {state['tiled_uri']}, document stream at "
              f"{state['stream']['subscribe']} ({service}); logs in {data_dir / 'queue' / 'logs'}.")
        return 0
    if args.action == "status":
        report = manager.queue_status(data_dir)
        state, status = report["state"], report["manager_status"]
        for name, alive in report["processes"].items():
            print(f"{name}: {'running' if alive else 'NOT RUNNING'} (pid {state[name]['pid']})")
        print(f"control address: {state['zmq_control_addr']}; Redis: {state['redis_addr']}; Tiled: {state['tiled_uri']}; "
              f"document stream: {state.get('stream', {}).get('subscribe', 'none')}")
        if not state.get("analysis"):
            print("analysis: not started (runs are analysed when `mc-beamline analysis serve` starts)")
        if report["redis_error"]:
            print(f"Redis at {state['redis_addr']}: NOT ANSWERING ({report['redis_error']})")
        if report["last_failure"]:
            failure = report["last_failure"]
            print(f"last failed item: {failure['name']} ({failure['exit_status']}): {failure['msg']}")
        if status is None:
            print("RE Manager: not answering")
            return 3
        print(f"RE Manager: {status['manager_state']}; environment "
              f"{'open' if status['worker_environment_exists'] else 'closed'} ({status['worker_environment_state']}); "
              f"RE {status['re_state']}; queue {status['items_in_queue']} items, history {status['items_in_history']}; "
              f"running item: {status['running_item_uid'] or 'none'}; mode {status['plan_queue_mode']}")
        return 0
    manager.stop_queue(data_dir, force=args.force)
    print(f"Queue of {data_dir} stopped.")
    return 0


def run_profile(args) -> None:
    """``mc-beamline profile install``: the IPython profile (an existing one is kept unless ``--force``)."""
    from mc_beamline.queue_server.ipython_profile import install_profile

    path = install_profile(args.name, data_dir=args.data_dir, prefix=args.prefix, tiled_uri=args.tiled,
                           ipython_dir=args.ipython_dir, force=args.force)
    print(f"IPython profile {args.name!r}: {path}; start it with `ipython --profile={args.name}`.")


__all__ = ["run_profile", "run_queue"]
