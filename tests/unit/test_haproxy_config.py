"""HAProxy configuration rendering (validated by the real binary) and `show stat` parsing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from resilience.errors import HarnessError
from resilience.targets.local.haproxy import (
    HAPROXY_BINARY,
    check_command,
    foreground_command,
    normalize_status,
    parse_show_stat,
    render_config,
    server_name,
)

# Captured from HAProxy 2.6.12 `show stat` (header + the api servers), one server edited to UP.
SHOW_STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,statu"
    "s,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rat"
    "e,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_"
    "5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,co"
    "mp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,che"
    "ck_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie"
    ",mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,c"
    "ache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur"
    ",used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ss"
    "l_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_str"
    "eam_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_str"
    "eam_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_"
    "total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,"
    "h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,"
    "\n"
    "api,api1,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,0,0,0,0,,1,3,1,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:9,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "api,api2,0,0,3,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1,1,0,0,1,0,0,,1,3,2,,0,,2,0,,0,L7OK,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,10.231.2.1:8102,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "api,api3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,0,1,0,0,,1,3,3,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,127.0.0.1:17102,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "api,BACKEND,0,0,0,0,800,0,0,0,0,0,,0,0,0,0,DOWN,0,0,0,,0,0,0,,1,3,0,,0,,1,0\n"
)


def _config(tmp_path: Path, slots: int = 3) -> str:
    return render_config(bind="127.0.0.1", port=17080, stats_port=17404,
                         socket_path=str(tmp_path / "admin.sock"), slots=slots,
                         pidfile=str(tmp_path / "haproxy.pid"))


def test_config_declares_every_slot_disabled_with_checks(tmp_path: Path) -> None:
    text = _config(tmp_path, slots=4)
    for i in range(1, 5):
        assert f"server api{i} 127.0.0.1:9 check disabled" in text
    assert "server api5" not in text
    assert "option httpchk GET /health/ready" in text
    assert "default-server inter 500ms fall 2 rise 2 fastinter 250ms" in text
    assert "retries 3" in text and "option redispatch 1" in text
    assert f"stats socket {tmp_path / 'admin.sock'} mode 600 level admin expose-fd listeners" in text
    assert "bind 127.0.0.1:17080" in text and "bind 127.0.0.1:17404" in text
    assert "daemon" not in text


def test_config_is_accepted_by_haproxy(tmp_path: Path) -> None:
    if not Path(HAPROXY_BINARY).is_file():
        pytest.skip(f"{HAPROXY_BINARY} not installed")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(_config(tmp_path))
    result = subprocess.run(check_command(cfg), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    # -q hides notices; anything left is a warning we want to know about
    assert "WARNING" not in result.stdout + result.stderr


def test_broken_config_is_rejected_by_haproxy(tmp_path: Path) -> None:
    if not Path(HAPROXY_BINARY).is_file():
        pytest.skip(f"{HAPROXY_BINARY} not installed")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(_config(tmp_path).replace("balance leastconn", "balance nonsense"))
    result = subprocess.run(check_command(cfg), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0


def test_foreground_command_never_daemonizes(tmp_path: Path) -> None:
    cmd = foreground_command(tmp_path / "haproxy.cfg")
    assert "-db" in cmd and "-D" not in cmd


def test_render_rejects_zero_slots(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        render_config(bind="127.0.0.1", port=1, stats_port=2, socket_path="/x", slots=0)


def test_server_names() -> None:
    assert server_name(1) == "api1"
    assert server_name(12) == "api12"
    with pytest.raises(ValueError):
        server_name(0)


@pytest.mark.parametrize("raw,plain", [
    ("UP", "UP"), ("UP 1/2", "UP"), ("DOWN 1/2", "DOWN"), ("MAINT", "MAINT"),
    ("MAINT (resolution)", "MAINT"), ("DRAIN", "DRAIN"), ("no check", "no check"), ("NOLB", "NOLB"),
])
def test_normalize_status(raw: str, plain: str) -> None:
    assert normalize_status(raw) == plain


def test_parse_show_stat() -> None:
    states = parse_show_stat(SHOW_STAT)
    assert sorted(states) == [1, 2, 3]
    assert states[1].status == "MAINT" and states[1].address == "127.0.0.1:9"
    assert states[2].status == "UP" and states[2].raw_status == "UP 1/2"
    assert states[2].current_sessions == 3
    assert states[2].address == "10.231.2.1:8102"
    assert states[2].check_status == "L7OK"
    assert states[3].status == "DOWN" and states[3].check_status == "L4CON"
    assert [s for s, st in states.items() if st.up] == [2]


def test_parse_show_stat_rejects_garbage() -> None:
    with pytest.raises(HarnessError):
        parse_show_stat("Unknown command\n")

