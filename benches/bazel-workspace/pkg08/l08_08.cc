#include "pkg08/l08_08.h"
#include "pkg08/l08_07.h"
#include <algorithm>
#include <numeric>

namespace l08_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 5) ^ (b + 80); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 80, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l08_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_08:" + std::to_string(score({seed, seed * 5, 80}));
}
}  // namespace l08_08
