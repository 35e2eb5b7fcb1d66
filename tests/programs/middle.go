// The Go middle hop (net/http server + client): calls BACK_PORT at /backend<path>.
package main

import (
	"io"
	"net/http"
	"os"
)

func main() {
	back := os.Getenv("BACK_PORT")
	client := &http.Client{}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		resp, err := client.Get("http://127.0.0.1:" + back + "/backend" + r.URL.Path)
		if err != nil {
			w.WriteHeader(502)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		w.Write(b)
	})
	http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil)
}
