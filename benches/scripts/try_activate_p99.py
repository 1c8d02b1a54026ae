# Engine latency (p50, p99 of 2,000 sequential GETs) idle, then while two clients loop
# try-activates of a 100,000-deep YAML file. Usage: python3 benches/scripts/try_activate_p99.py [BINARY]
import subprocess, socket, time, threading, re, sys, os, tempfile
d=tempfile.mkdtemp()
cfg=os.path.join(d,'c.yaml')
open(cfg,'w').write('modules:\n  - { name: web, type: http.server, config: { address: "127.0.0.1:0" } }\npipelines:\n  hello:\n    trigger: { type: http, config: { server: web, method: GET, path: /hello } }\n    steps:\n      - { name: r, type: step.json_response, config: { body: { ok: true } } }\n')
p=subprocess.Popen([sys.argv[1] if len(sys.argv) > 1 else 'target/debug/swapvisor','run',cfg,'--admin','127.0.0.1:0'],stderr=subprocess.PIPE,text=True,env=dict(os.environ,RUST_LOG='info'))
line=''
while 'swapvisor is up' not in line: line=p.stderr.readline()
web=re.search(r'web=http://([\d.]+):(\d+)',line); adm=re.search(r'admin=http://([\d.]+):(\d+)',line)
web=(web.group(1),int(web.group(2))); adm=(adm.group(1),int(adm.group(2)))
deep=b'['*100000
def req(addr, data):
    s=socket.create_connection(addr); s.sendall(data); out=b''
    while True:
        c=s.recv(65536)
        if not c: break
        out+=c
    s.close(); return out
def lat(n):
    xs=[]
    for _ in range(n):
        t=time.perf_counter(); r=req(web,b'GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'); xs.append(time.perf_counter()-t); assert b' 200 ' in r[:20], r
    xs.sort(); return xs[len(xs)//2]*1000, xs[int(len(xs)*0.99)]*1000
print('idle   p50 %.2f ms p99 %.2f ms'%lat(2000))
stop=False; count=[0]
def flood():
    while not stop:
        r=req(adm,b'POST /api/v1/admin/engine/try-activate HTTP/1.1\r\nHost: t\r\nContent-Type: application/yaml\r\nContent-Length: %d\r\nConnection: close\r\n\r\n'%len(deep)+deep); count[0]+=1
ts=[threading.Thread(target=flood) for _ in range(2)]
[t.start() for t in ts]
print('2 try-activates of a 100,000-deep file looping: p50 %.2f ms p99 %.2f ms'%lat(2000))
stop=True; [t.join() for t in ts]
print('try-activates answered during the run:',count[0])
p.terminate(); p.wait()
