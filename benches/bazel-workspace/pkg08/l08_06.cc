#include "pkg08/l08_06.h"
#include "pkg08/l08_05.h"
#include <algorithm>
#include <numeric>

namespace l08_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 3) ^ (b + 78); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 78, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l08_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l08_06:" + std::to_string(score({seed, seed * 3, 78}));
}
}  // namespace l08_06
