#include "pkg02/l02_01.h"
#include "pkg02/l02_00.h"
#include <algorithm>
#include <numeric>

namespace l02_01 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 9) ^ (b + 19); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 19, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 7 == 0; }));
  total += l02_00::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_01:" + std::to_string(score({seed, seed * 9, 19}));
}
}  // namespace l02_01
